"""Loopback ports that are free now and stay free until their process binds them.

``free_port`` is for whoever must name a port before a process listens on it: the NATS servers of a
development or test cluster (their route addresses go into each other's configuration), daemons started
by tests and benchmarks that restart on the same ports, and clients told to reach a closed port.

Asking the kernel for port 0 hands out a port of its *ephemeral range*
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default): the same range it draws the
source ports of outgoing connections from. Between the choice and the bind, any connection this machine
opens may take that port as its source, and the listener then fails with "address already in use" (seen
in CI: a NATS route port taken while the other servers of the cluster were connecting). So ports are
chosen below the ephemeral range, at random among 20000 up to its start, tried with a bind, and never
handed out twice by one process. Where the range leaves no room below it, ports above it are used, and
as a last resort port 0.
"""

from __future__ import annotations

import random
import socket
import threading

_LOWEST = 20000  # below: well-known service ports (NATS 4222/6222/8222, ProximaDB 5678/5679, ...)
_given: set[tuple[str, int]] = set()
_lock = threading.Lock()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (inclusive)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; other systems: near enough to choose outside of it


def _spans() -> list[tuple[int, int]]:
    low, high = ephemeral_range()
    spans = []
    if low - 1 - _LOWEST >= 1000:
        spans.append((_LOWEST, low - 1))
    if 65535 - (high + 1) >= 1000:
        spans.append((high + 1, 65535))
    return spans


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now, outside the ephemeral range, and not handed out before by
    this process."""
    rng = random.Random()
    with _lock:
        for low, high in _spans():
            for _ in range(200):
                port = rng.randint(low, high)
                if (host, port) not in _given and _bindable(host, port):
                    _given.add((host, port))
                    return port
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        _given.add((host, port))
        return port
