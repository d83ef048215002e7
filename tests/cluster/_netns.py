"""A network namespace joined to this one by a veth pair, for the NATS partition test (needs root and
iproute2's ``ip``; nothing else).

    this namespace                          the test's namespace ``pxdb-np-<pid>``
    pxh<pid> 10.211.A.B+1/30  <--veth-->    pxn<pid> 10.211.A.B+2/30

The /30 is picked from the pid (``10.211.0.0/16`` holds 16,384 of them), like every name here, so that
runs in parallel do not collide; a run whose /30 is already in use on this machine fails at once, naming
it. :meth:`NetNamespace.cut` sets this side's end of the veth down: every packet between the two
namespaces is dropped, connections across it go silent (no reset), as on a real network partition;
:meth:`NetNamespace.heal` sets it up again. :meth:`NetNamespace.destroy` kills what still runs in the
namespace (only the test's processes run there) and deletes it, which deletes the veth pair.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class NetNamespace:
    def __init__(self, pid: int) -> None:
        self.name = f"pxdb-np-{pid}"
        self.host_if, self.ns_if = f"pxh{pid}", f"pxn{pid}"  # at most 10 characters: under IFNAMSIZ
        index = pid % 16384
        base = f"10.211.{index // 64}"
        self.host_addr, self.ns_addr = f"{base}.{index % 64 * 4 + 1}", f"{base}.{index % 64 * 4 + 2}"
        self.created = False

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot run the test (None: it can)."""
        if os.geteuid() != 0:
            return "needs root: it makes a network namespace and a veth pair (ip netns, ip link)"
        if shutil.which("ip") is None:
            return "needs iproute2's ip command (ip netns, ip link)"
        probe = _ip("netns", "list", check=False)
        if probe.returncode != 0:
            return f"ip netns is not available here: {probe.stderr.strip()}"
        return None

    @property
    def exec_prefix(self) -> list[str]:
        """Run a command inside the namespace: this, then the command."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        taken = _ip("-o", "-4", "addr", "show").stdout
        for address in (self.host_addr, self.ns_addr):
            if f" {address}/" in taken:
                raise RuntimeError(f"{address} is in use on this machine already (another run with a pid "
                                   f"equal modulo 16384?): {self.name} cannot take it")
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ["-n", self.name]
        _ip(*inside, "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if)
        _ip(*inside, "link", "set", self.ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        """Kill what runs inside (the test's processes only), delete the namespace and the veth pair; a
        finalizer's: runs whatever state a failed test left."""
        if self.created:
            for pid in _ip("netns", "pids", self.name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _ip("netns", "del", self.name, check=False)
        if _ip("link", "show", self.host_if, check=False).returncode == 0:
            _ip("link", "del", self.host_if, check=False)
