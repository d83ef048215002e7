"""``proximadb dev-cluster`` run as a user runs it, for the end-to-end cluster tests: a subprocess started
outside the source tree, read through its cluster.json; one daemon can be killed (its whole process group,
a crash) and started again with the same command line, environment and directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from _support import child_env, wait_until

from proximadb.cluster.nats_servers import NatsServer
from proximadb.cluster.nats_session import NatsSession
from proximadb.sdk import connect_grpc, connect_rest


class DevCluster:
    def __init__(self, directory: Path, *options: str, **env: str) -> None:
        """``options``: more ``dev-cluster`` options (a later ``--nats 1`` overrides the default 3)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proximadb", "dev-cluster", "--nodes", "3", "--nats", "3", "--cluster-ttl", "4",
             *options, str(directory)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(**env),
            text=True, cwd=str(directory))  # not the source tree: python -m would import its uncompiled package
        manifest = directory / "cluster.json"
        wait_until("dev-cluster writes cluster.json", lambda: manifest.exists() or self.proc.poll() is not None,
                   deadline=120)
        assert self.proc.poll() is None, self.proc.communicate()[0]
        self.doc: dict[str, Any] = json.loads(manifest.read_text())
        self.clients: list[Any] = []
        self.restarted: list[subprocess.Popen[bytes]] = []  # daemons started again here, not by dev-cluster

    def rest(self, i: int) -> Any:
        client = connect_rest(self.doc["nodes"][i]["rest"])
        self.clients.append(client)
        return client

    def grpc(self, i: int) -> Any:
        client = connect_grpc(self.doc["nodes"][i]["grpc"])
        self.clients.append(client)
        return client

    def kill_and_restart(self, i: int, *, wipe: bool = False) -> None:
        """SIGKILL node ``i``'s daemon (master and worker), optionally delete its data directory, and start it
        again exactly as dev-cluster had (same ports, so cluster.json stays true); returns once it is ready."""
        self.restart(i, self.kill(i), wipe=wipe)

    def kill(self, i: int) -> tuple[list[str], dict[str, str], str]:
        """SIGKILL node ``i``'s daemon (its process group, a crash); returns what :meth:`restart` needs to start
        it again: its command line, environment and working directory, read before the kill."""
        node = self.doc["nodes"][i]
        proc = Path(f"/proc/{node['pid']}")
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        env = dict(line.split(b"=", 1) for line in (proc / "environ").read_bytes().split(b"\0") if b"=" in line)
        cwd = os.readlink(proc / "cwd")
        os.killpg(node["pid"], signal.SIGKILL)
        wait_until(f"node {node['id']} is gone", lambda: not _alive(node["pid"]), 30)
        return argv, {k.decode(): v.decode() for k, v in env.items()}, cwd

    def restart(self, i: int, how: tuple[list[str], dict[str, str], str], *, wipe: bool = False) -> None:
        """Start node ``i`` again as :meth:`kill` found it (``wipe``: its data directory deleted first);
        returns once it answers."""
        node = self.doc["nodes"][i]
        argv, env, cwd = how
        if wipe:
            shutil.rmtree(argv[argv.index("--data-dir") + 1])
        with open(self.directory / node["id"] / "daemon.log", "ab") as out:  # where dev-cluster had it write
            started = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.restarted.append(started)
        node["pid"] = started.pid
        wait_until(f"node {node['id']} answers again", lambda: _answers(node["rest"]), 120)

    def nats_servers(self) -> list[NatsServer]:
        """dev-cluster's NATS servers, as their nats.conf files describe them (ports for their monitoring)."""
        servers = []
        for conf in sorted((self.directory / "nats").glob("*/nats.conf")):
            text = conf.read_text()

            def port(key: str, text: str = text) -> int:
                found = re.search(rf"^\s*{key}:\s*[0-9.]+:(\d+)", text, re.M)
                return int(found[1]) if found else 0

            name = re.search(r"^server_name:\s*(\S+)", text, re.M)
            host = re.search(r"^listen:\s*([0-9.]+):", text, re.M)
            assert name is not None and host is not None, text
            servers.append(NatsServer(name[1], conf.parent, port("listen"), port(".*cluster.*listen"), port("http"),
                                      host=host[1]))
        return servers

    def kill_nats(self, server: NatsServer) -> list[str]:
        """SIGKILL the NATS server (found by its nats.conf path on its command line); returns that command line."""
        conf = str(server.directory / "nats.conf")
        for pid in self.processes():
            try:
                argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            if conf in argv:
                os.kill(pid, signal.SIGKILL)
                wait_until(f"NATS server {server.name} is gone", lambda p=pid: not _alive(p), 30)
                return argv
        raise AssertionError(f"no running NATS server with {conf}")

    def restart_nats(self, server: NatsServer, argv: list[str]) -> None:
        """Start the NATS server again with the same command line; returns once it is healthy (its
        JetStream streams current: /healthz answers 200)."""
        with open(server.directory / "nats.log", "ab") as out:
            started = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.restarted.append(started)
        wait_until(f"NATS server {server.name} is healthy again", lambda: server.monitor("/healthz") is not None, 120)

    def processes(self) -> list[int]:
        """Every live process whose command line names the cluster's directory (daemons, NATS servers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.proc.pid:
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    state = (entry / "stat").read_text().split()[2]
                except OSError:
                    continue
                if str(self.directory) in cmdline and state != "Z":
                    found.append(int(entry.name))
        return found

    def stop(self) -> str:
        for client in self.clients:
            client.close()
        for started in self.restarted:  # not dev-cluster's children: it cannot stop them
            if started.poll() is None:
                os.killpg(started.pid, signal.SIGTERM)
                try:
                    started.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(started.pid, signal.SIGKILL)
                    started.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        return out

    def log_streams(self) -> list[str]:
        """The cluster's shard logs (JetStream streams ``PXDB_*``), by name."""
        return sorted(self.log_lengths())

    def log_lengths(self) -> dict[str, int]:
        """The cluster's shard logs (JetStream streams ``PXDB_*``): the entries each holds, by name."""
        session = NatsSession(self.doc["nats"], "test")
        try:
            async def lengths() -> dict[str, int]:
                return {info.config.name: int(info.state.messages) for info in await session.js.streams_info()}
            return {n: m for n, m in session.call(lengths, "listing streams").items() if n.startswith("PXDB_")}
        finally:
            session.close()

    def kill_leftovers(self) -> None:
        """Never leave processes behind, even when a test failed."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _answers(url: str) -> bool:
    """The daemon at ``url`` answers (connect_rest's version handshake is already a call, so it is in here)."""
    try:
        with connect_rest(url) as client:
            client.list_collections()
        return True
    except Exception:
        return False
