"""A network namespace joined to this one by a veth pair, for the NATS partition test (needs root and
iproute2's ``ip``; nothing else).

    this namespace                          the test's namespace ``pxdb-np-<pid>``
    pxh<pid> 10.211.A.B+1/30  <--veth-->    pxn<pid> 10.211.A.B+2/30     the link that is cut
    pxc<pid> 10.211.A.B+5/30  <--veth-->    pxd<pid> 10.211.A.B+6/30     the side link, never cut

The /29 is picked from the pid (``10.211.0.0/16`` holds 8,192 of them), like every name here, so that
runs in parallel do not collide; a run whose addresses are already in use on this machine fails at once,
naming them. :meth:`NetNamespace.cut` sets this side's end of the first veth down: every packet between
the two namespaces' addresses on it is dropped, connections across it go silent (no reset), as on a real
network partition; :meth:`NetNamespace.heal` sets it up again. The side link carries what the test must
still reach while the first is cut (a daemon's client ports): the namespace has no other route, so
traffic to the first link's far address never takes it. :meth:`NetNamespace.destroy` kills what still runs in the
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
        self.side_host_if, self.side_ns_if = f"pxc{pid}", f"pxd{pid}"
        index = pid % 8192
        base, low = f"10.211.{index // 32}", index % 32 * 8
        self.host_addr, self.ns_addr = f"{base}.{low + 1}", f"{base}.{low + 2}"
        self.side_host_addr, self.side_ns_addr = f"{base}.{low + 5}", f"{base}.{low + 6}"
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
        for address in (self.host_addr, self.ns_addr, self.side_host_addr, self.side_ns_addr):
            if f" {address}/" in taken:
                raise RuntimeError(f"{address} is in use on this machine already (another run with a pid "
                                   f"equal modulo 8192?): {self.name} cannot take it")
        _ip("netns", "add", self.name)
        self.created = True
        inside = ["-n", self.name]
        for host_if, ns_if, host_addr, ns_addr in ((self.host_if, self.ns_if, self.host_addr, self.ns_addr),
                                                   (self.side_host_if, self.side_ns_if, self.side_host_addr,
                                                    self.side_ns_addr)):
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", self.name)
            _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip(*inside, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
            _ip(*inside, "link", "set", ns_if, "up")
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
        for host_if in (self.host_if, self.side_host_if):
            if _ip("link", "show", host_if, check=False).returncode == 0:
                _ip("link", "del", host_if, check=False)
