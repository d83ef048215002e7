"""``proximadb cluster status``: the cluster as the NATS servers see it (nodes, shards, replicas, lag)."""

from __future__ import annotations

import json
import os

import click

from proximadb.errors import ProximaDBError


@click.group("cluster")
def cluster() -> None:
    """Look at a ProximaDB cluster (cluster mode is being built: see docs/architecture.md)."""


@cluster.command("status")
@click.option("--nats", "urls", default=lambda: os.environ.get("PROXIMADB_CLUSTER", "nats://127.0.0.1:4222"),
              show_default="PROXIMADB_CLUSTER or nats://127.0.0.1:4222",
              help="The cluster's NATS servers, comma-separated.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the servers (an election, a restart) before giving up.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(urls: str, timeout: float, as_json: bool) -> None:
    """Nodes, and per collection and shard: the log's last sequence, which nodes hold a
    replica, and each replica's applied sequence and lag (as of its holder's last heartbeat).
    A holder that stopped beating shows as DOWN. Reads the NATS servers only; exits 1 when
    they cannot be reached within --timeout."""
    from proximadb.cluster.nats_session import NatsSession
    from proximadb.cluster.status import cluster_status, render

    servers = [u.strip() for u in urls.split(",") if u.strip()]
    if not servers:
        raise click.UsageError("--nats: give at least one nats:// URL")
    try:
        session = NatsSession(servers, "cluster-status", timeout=min(timeout, 5.0), deadline=timeout)
    except ProximaDBError as exc:
        raise click.ClickException(f"cannot reach the NATS servers at {', '.join(servers)}: {exc}") from None
    try:
        doc = cluster_status(session)
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        session.close()
    click.echo(json.dumps(doc, indent=2, sort_keys=True) if as_json else render(doc))
