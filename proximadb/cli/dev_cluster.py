"""``proximadb dev-cluster``: a local cluster on loopback — NATS JetStream servers and N daemons.

Layout under ``DIR``::

    nats/nats-1/ ...      the NATS servers (proximadb/cluster/nats_servers.py)
    n1/data/              node n1's data directory
    n1/daemon.log         its output
    cluster.json          written (atomically) once every node is ready:

    {"nodes": [{"id": "n1", "rest": "http://127.0.0.1:PORT", "grpc": "127.0.0.1:PORT", "pid": PID}, ...],
     "nats": ["nats://127.0.0.1:PORT", ...]}

Each daemon is ``proximadb serve --cluster ...`` in a session (process group) of its own whose leader is
``pid``: ``kill -9 -PID`` stops the whole daemon, as a crash of its machine would. On SIGTERM or SIGINT
every daemon gets SIGTERM (then SIGKILL after a grace period), the NATS servers stop, cluster.json goes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

READY_TIMEOUT = 120.0
STOP_GRACE = 40.0


def _ready(rest: str, api_key: str | None = None) -> bool:
    request = urllib.request.Request(f"{rest}/ready")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop_daemon(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker too, whatever became of the master
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@click.command("dev-cluster")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--nodes", type=click.IntRange(1, 16), default=3, show_default=True, help="ProximaDB daemons")
@click.option("--nats", "nats_servers", type=click.IntRange(1, 5), default=3, show_default=True,
              help="NATS JetStream servers (one cluster; 3 keep every write on a quorum of disks)")
@click.option("--cluster-ttl", type=float, default=10.0, show_default=True,
              help="Seconds without a heartbeat before a node counts as gone")
@click.option("--nats-host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address the NATS servers listen on (client, route and monitoring ports); an address of this "
                   "machine. The daemons stay on 127.0.0.1")
@click.option("--api-key", "api_key", default=None, metavar="KEY", envvar="PROXIMADB_DEV_CLUSTER_API_KEY",
              help="Require this read-write API key on every node (env PROXIMADB_DEV_CLUSTER_API_KEY); "
                   "the nodes get a random shared PROXIMADB_CLUSTER_KEY for their fan-out")
def dev_cluster(directory: Path, nodes: int, nats_servers: int, cluster_ttl: float, nats_host: str,
                api_key: str | None) -> None:
    """Run a local cluster in DIRECTORY: NATS servers and N `proximadb serve --cluster` daemons on 127.0.0.1.

    Prints each node's REST and gRPC address and writes DIRECTORY/cluster.json once every node is
    ready (ids, addresses, pids, NATS URLs). Each daemon keeps its data under DIRECTORY/<id>/data and
    its log in DIRECTORY/<id>/daemon.log. With --api-key every node requires that key and the nodes share a
    random PROXIMADB_CLUSTER_KEY for reads between them. Stops everything on Ctrl-C or SIGTERM. Data stays, so running
    it again on the same DIRECTORY brings the same cluster back (new ports).
    """
    from proximadb.cluster.fanout import CLUSTER_KEY_ENV
    from proximadb.cluster.nats_servers import NatsCluster
    from proximadb.free_ports import free_port

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # entry.py may hold them
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "cluster.json"
    manifest.unlink(missing_ok=True)
    nats = NatsCluster(directory / "nats", nats_servers, host=nats_host)
    daemons: list[tuple[str, subprocess.Popen[bytes], str, str]] = []
    env = dict(os.environ)
    if api_key:
        env["PROXIMADB_API_KEYS"] = api_key  # not on the command line, where ps shows it
        env[CLUSTER_KEY_ENV] = secrets.token_urlsafe(32)
    try:
        nats.start()
        urls = ",".join(nats.urls)
        click.echo(f"NATS: {urls}")
        for i in range(1, nodes + 1):
            if stop.is_set():
                return
            node_id, rest_port, grpc_port = f"n{i}", free_port(), free_port()
            home = directory / node_id
            home.mkdir(exist_ok=True)
            with open(home / "daemon.log", "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", "proximadb", "serve", "--cluster", urls, "--node-id", node_id,
                     "--host", "127.0.0.1", "--rest-port", str(rest_port), "--grpc-port", str(grpc_port),
                     "--data-dir", str(home / "data"), "--cluster-ttl", str(cluster_ttl)], env=env,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=home)
            daemons.append((node_id, proc, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"))
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = {node_id for node_id, *_ in daemons}
        while waiting and not stop.is_set():
            for node_id, proc, rest, _grpc in daemons:
                if proc.poll() is not None:
                    raise click.ClickException(f"node {node_id} exited with {proc.returncode}; see "
                                               f"{directory / node_id / 'daemon.log'}")
                if node_id in waiting and _ready(rest, api_key):
                    waiting.discard(node_id)
            if time.monotonic() > deadline:
                raise click.ClickException(f"nodes {', '.join(sorted(waiting))} not ready in {READY_TIMEOUT:g}s")
            stop.wait(0.2)
        if stop.is_set():
            return
        doc = {"nodes": [{"id": node_id, "rest": rest, "grpc": grpc, "pid": proc.pid}
                         for node_id, proc, rest, grpc in daemons], "nats": nats.urls}
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, manifest)
        for node_id, proc, rest, grpc in daemons:
            click.echo(f"{node_id}: REST {rest}  gRPC {grpc}  pid {proc.pid}")
        click.echo(f"ready: {manifest} (Ctrl-C stops the cluster)", err=False)
        sys.stdout.flush()
        stop.wait()
    finally:
        click.echo("stopping the cluster", err=True)
        manifest.unlink(missing_ok=True)
        threads = [threading.Thread(target=_stop_daemon, args=(proc, STOP_GRACE)) for _, proc, *_ in daemons]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        nats.stop()
