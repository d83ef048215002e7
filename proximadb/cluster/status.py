"""What ``proximadb cluster status`` shows: the live nodes, and per collection and shard the log's last
sequence and each replica's holder, applied sequence and lag — read from the NATS servers alone. The log's
first sequence shows how far it was purged (proximadb/cluster/retention.py), each replica's ``checkpointed``
what its files hold.

Nodes come from the membership bucket (:mod:`proximadb.cluster.membership`), with what each said at
its last heartbeat of the replicas it runs; shard maps from :mod:`proximadb.cluster.shard_map`; each
shard's last sequence from its stream (:mod:`proximadb.cluster.shard_log`, via the node's naming in
:func:`proximadb.cluster.names.shard_log_name`). A replica's lag is the log's last sequence minus what it had
applied at its holder's last beat (so up to one heartbeat period old); a holder that is not live
shows as ``down``.
"""

from __future__ import annotations

from typing import Any

from proximadb.cluster.membership import live_nodes
from proximadb.cluster.names import INCARNATION, shard_log_name
from proximadb.cluster.nats_session import NatsSession, bucket_stream
from proximadb.cluster.shard_log import stream_name
from proximadb.cluster.shard_map import BUCKET, ShardMaps


def cluster_status(session: NatsSession) -> dict[str, Any]:
    """The status document (the CLI prints it as text or JSON)."""
    nodes = live_nodes(session)
    by_id = {n.id: n for n in nodes}
    collections = []
    for shard_map in _maps(session):
        shards = []
        for shard, holders in enumerate(shard_map.replicas):
            first, last = _log_range(session, shard_log_name(shard_map, shard))
            replicas = []
            for holder in holders:
                node = by_id.get(holder)
                key = f"{shard_map.collection}/{shard}"
                applied = None if node is None else node.applied.get(key)
                replicas.append({"node": holder, "state": "down" if node is None else "up", "applied": applied,
                                 "checkpointed": None if node is None else node.checkpointed.get(key),
                                 "lag": None if applied is None else max(0, last - applied)})
            shards.append({"shard": shard, "log_first_seq": first, "log_last_seq": last, "replicas": replicas})
        collections.append({"name": shard_map.collection, "shards": shard_map.shards,
                            "replication_factor": shard_map.replication_factor, "epoch": shard_map.epoch,
                            "spec": {k: v for k, v in shard_map.spec.items() if k != INCARNATION},
                            "placement": shards})
    return {"nodes": [{"id": n.id, "rest": n.rest, "grpc": n.grpc, "started_at": n.started_at} for n in nodes],
            "collections": collections}


def render(status: dict[str, Any]) -> str:
    lines = [f"nodes: {len(status['nodes'])} live"]
    lines += [f"  {n['id']:<16} rest {n['rest']:<28} grpc {n['grpc']}" for n in status["nodes"]]
    if not status["collections"]:
        lines.append("collections: none")
    for col in status["collections"]:
        lines.append(f"collection {col['name']}: {col['shards']} shard(s) x {col['replication_factor']} "
                     f"replica(s), map epoch {col['epoch']}")
        for shard in col["placement"]:
            parts = []
            for r in shard["replicas"]:
                if r["state"] == "down":
                    parts.append(f"{r['node']} DOWN")
                elif r["applied"] is None:
                    parts.append(f"{r['node']} starting")
                else:
                    parts.append(f"{r['node']} applied {r['applied']} (lag {r['lag']})")
            kept = f"{shard['log_first_seq']}..{shard['log_last_seq']}"
            lines.append(f"  shard {shard['shard']:<3} log {kept:<16} " + "; ".join(parts))
    return "\n".join(lines)


def _maps(session: NatsSession) -> list[Any]:
    from nats.js.errors import NotFoundError

    try:
        session.call(lambda: session.js.stream_info(bucket_stream(BUCKET)), "reading the shard maps",
                     answers=(NotFoundError,))
    except NotFoundError:
        return []  # no collection was ever created
    return ShardMaps(session).all()


def _log_range(session: NatsSession, name: str) -> tuple[int, int]:
    """The first and last sequence the shard log holds ((0, 0) before its first write)."""
    from nats.js.errors import NotFoundError

    try:
        info = session.call(lambda: session.js.stream_info(stream_name(name)), f"reading stream {stream_name(name)}",
                            answers=(NotFoundError,))
    except NotFoundError:
        return 0, 0  # no write reached this shard yet
    return int(info.state.first_seq), int(info.state.last_seq)
