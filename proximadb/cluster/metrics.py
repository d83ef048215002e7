"""Cluster figures in the daemon's ``/metrics`` (``serve --cluster``): what ``proximadb cluster status``
shows of this node, scraped from the node itself.

- ``proximadb_cluster_nodes_live`` — live nodes in the membership bucket;
- ``proximadb_cluster_replica_applied_seq`` / ``..._checkpointed_seq`` ``{collection, shard}`` — per replica
  held here, the last log sequence applied and the last one its files hold (flushed);
- ``proximadb_cluster_replica_lag`` ``{collection, shard}`` — the shard log's last sequence minus the applied
  one, read from JetStream at the scrape (every shard of a collection in one round trip);
- ``proximadb_cluster_snapshots_installed_total`` — replicas this node rebuilt from a peer's snapshot;
- ``proximadb_cluster_log_purged_entries_total`` — log entries this node's purges dropped.

When the NATS servers do not answer, the figures that need them are left out of that scrape (and logged),
so ``/metrics`` keeps answering.
"""

from __future__ import annotations

import logging
from typing import Any

from proximadb.cluster.shard_log import LogDeletedError
from proximadb.errors import ProximaDBError
from proximadb.service.metrics import Metrics

log = logging.getLogger("proximadb.cluster")
Samples = list[tuple[tuple[tuple[str, str], ...], float]]


def register(metrics: Metrics, node: Any) -> None:
    """Add the cluster gauges for ``node`` (a started :class:`~proximadb.cluster.node.ClusterNode`)."""
    metrics.describe("proximadb_cluster_nodes_live", "gauge", "Live nodes in the cluster (membership bucket).")
    metrics.describe("proximadb_cluster_replica_applied_seq", "gauge",
                     "Per replica held here: the last shard-log sequence applied.")
    metrics.describe("proximadb_cluster_replica_checkpointed_seq", "gauge",
                     "Per replica held here: the last shard-log sequence its files hold (checkpoint).")
    metrics.describe("proximadb_cluster_replica_lag", "gauge",
                     "Per replica held here: log entries not yet applied (the log's last sequence minus applied).")
    metrics.describe("proximadb_cluster_snapshots_installed_total", "counter",
                     "Replicas this node rebuilt from a peer's snapshot.")
    metrics.describe("proximadb_cluster_log_purged_entries_total", "counter",
                     "Shard-log entries dropped by this node's purges.")
    metrics.gauge("proximadb_cluster_nodes_live", lambda: _nodes_live(node))
    metrics.gauge("proximadb_cluster_replica_applied_seq", lambda: _positions(node, "applied"))
    metrics.gauge("proximadb_cluster_replica_checkpointed_seq", lambda: _positions(node, "checkpointed"))
    metrics.gauge("proximadb_cluster_replica_lag", lambda: _lags(node))
    metrics.gauge("proximadb_cluster_snapshots_installed_total", lambda: [((), float(node.snapshots_installed))])
    metrics.gauge("proximadb_cluster_log_purged_entries_total",
                  lambda: [((), float(node.retention.purged_entries))])


def _labels(replica: str) -> tuple[tuple[str, str], ...]:
    name, shard = replica.rsplit("/", 1)
    return (("collection", name), ("shard", shard))


def _nodes_live(node: Any) -> Samples:
    try:
        return [((), float(len(node.membership.nodes())))]
    except ProximaDBError as exc:
        log.warning("metrics: cluster membership left out of this scrape: %s", exc)
        return []


def _positions(node: Any, which: str) -> Samples:
    return [(_labels(replica), float(seq)) for replica, seq in sorted(node.replica_positions()[which].items())]


def _lags(node: Any) -> Samples:
    applied = node.replica_positions()["applied"]
    by_collection: dict[str, list[int]] = {}
    for replica in applied:
        name, shard = replica.rsplit("/", 1)
        by_collection.setdefault(name, []).append(int(shard))
    out: Samples = []
    for name, shards in sorted(by_collection.items()):
        try:
            lasts = node.last_seqs(node.known_map(name), shards)
        except (ProximaDBError, LogDeletedError) as exc:  # the latter: dropped since the last sync
            log.warning("metrics: the lag of %s left out of this scrape: %s", name, exc)
            continue
        out += [(_labels(f"{name}/{shard}"), float(max(0, last - applied[f"{name}/{shard}"])))
                for shard, last in zip(shards, lasts, strict=True)]
    return out
