"""systemd readiness notification (``sd_notify``) without libsystemd.

Protocol: when a service runs with ``Type=notify``, systemd puts the address
of a datagram socket in ``NOTIFY_SOCKET``: a filesystem path (``/run/...``) or
an abstract-namespace name written with a leading ``@``. The service sends
one datagram per update, UTF-8, newline-separated ``KEY=VALUE`` fields:
``READY=1``, ``STOPPING=1``, ``STATUS=<free text>``, ``MAINPID=<pid>``.
Without ``NOTIFY_SOCKET`` every call here is a no-op, and no call ever raises:
a failed notification is logged at debug level and reported as ``False``.

Why the daemon claims the address (:func:`claim_socket`) before gunicorn
starts: gunicorn's arbiter sends its own ``READY=1`` as soon as it has bound
the REST port, before the worker has recovered the WAL or started gRPC. So
the master takes ``NOTIFY_SOCKET`` out of the environment (gunicorn then sees
nothing to notify) and keeps the address in this module, which the forked
worker inherits; the worker sends ``READY=1`` when it really is ready. It
also keeps the variable away from any process the daemon might start.

The worker is not systemd's main process (the gunicorn master is), so the
unit needs ``NotifyAccess=all``: with ``main`` (or ``exec``) systemd drops the
worker's messages and the start times out. Along with ``READY=1`` the worker
sends ``MAINPID=<its parent>``, the master. systemd knows that already when
``ExecStart`` execs straight into the master (``/usr/bin/env`` does); it
matters when a wrapper that does not exec sits in between, so that the stop
signal (``KillMode=mixed``: main process only) still reaches the master.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterable
from types import FrameType
from typing import Any

log = logging.getLogger("proximadb.notify")

ENV_VAR = "NOTIFY_SOCKET"
SEND_TIMEOUT_S = 2.0  # never let a wedged receiver hold up start or shutdown for long

_claimed = False
_claimed_address: str | None = None
_stopping_sent = False


def claim_socket() -> str | None:
    """Move ``NOTIFY_SOCKET`` from the environment into this module; returns the address (or None)."""
    global _claimed, _claimed_address
    address = os.environ.pop(ENV_VAR, None)
    if address or not _claimed:  # a second call keeps what the first one took
        _claimed_address = address or None
    _claimed = True
    return _claimed_address


def _address() -> str | None:
    return _claimed_address if _claimed else (os.environ.get(ENV_VAR) or None)


def _socket_address(address: str) -> str | None:
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    if address.startswith("/"):
        return address
    return None  # e.g. vsock:... — not something this daemon is run under


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it was sent."""
    address = _address()
    if not address:
        return False
    target = _socket_address(address)
    if target is None:
        log.debug("sd_notify: unsupported %s=%r; not notifying", ENV_VAR, address)
        return False
    # A newline inside a value would start a new field: flatten it.
    payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendto(payload, target)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", address, exc)
        return False
    except Exception as exc:  # a notification must never take the daemon down
        log.debug("sd_notify to %s failed unexpectedly: %r", address, exc)
        return False
    return True


def status(text: str) -> bool:
    """Free-text state shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def ready(status_text: str, main_pid: int | None = None) -> bool:
    """Ready to serve. ``main_pid`` names the process systemd should treat as the main one."""
    fields = ["READY=1", f"STATUS={status_text}"]
    if main_pid is not None:
        fields.append(f"MAINPID={main_pid}")
    return notify(*fields)


def stopping(status_text: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={status_text}")


def stopping_on_signals(
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT),
    status_text: str = "stopping: finishing in-flight requests, then closing the WAL",
) -> None:
    """Send ``STOPPING=1`` when one of ``signals`` arrives, then run the handler installed before.

    Call it from the main thread, after the process has installed its own
    handlers (for the gunicorn worker: in ``load()``, which runs after the
    worker's ``init_signals``). It does nothing when there is no socket to notify.
    """
    if not _address():
        return
    for signum in signals:
        previous = signal.getsignal(signum)
        signal.signal(signum, _chain(previous, status_text))


def _chain(previous: Any, status_text: str) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        global _stopping_sent
        if not _stopping_sent:  # once, whichever signal comes first
            _stopping_sent = True
            stopping(status_text)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        # SIG_IGN (or None: a handler not set from Python): nothing more to do

    return handler
