"""sd_notify without libsystemd: proximadb.server.notify, and the daemon's READY=1 / STOPPING=1.

The tests play systemd's part: they own a SOCK_DGRAM unix socket and point
NOTIFY_SOCKET at it (a path, or an abstract name written ``@name``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _daemon import Daemon

from proximadb.server import notify


class NotifyReceiver:
    """What systemd does with NOTIFY_SOCKET: receive datagrams of KEY=VALUE lines."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"proximadb-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="pxdb-notify-")  # short: sun_path holds 108 bytes
            self.address = os.path.join(self._dir, "notify.sock")
            self.sock.bind(self.address)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode("utf-8").split("\n") if line)
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float, proc: Any = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(0.1)
            if message is not None and key in message:
                return message
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process exited with {proc.returncode} before sending {key}")
        raise AssertionError(f"no {key} within {timeout}s; received {self.messages}")

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            os.unlink(self.address)
            os.rmdir(self._dir)


@pytest.fixture
def clean_notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with NOTIFY_SOCKET unset and nothing claimed."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(notify, "_claimed", False)
    monkeypatch.setattr(notify, "_claimed_address", None)
    monkeypatch.setattr(notify, "_stopping_sent", False)
    yield


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Iterator[NotifyReceiver]:
    rx = NotifyReceiver(abstract=request.param == "abstract")
    yield rx
    rx.close()


# --- notify() against a socket the test owns ----------------------------------------------------------------------


def test_without_notify_socket_every_call_is_a_noop(clean_notify: None) -> None:
    assert notify.notify("READY=1") is False
    assert notify.ready("serving") is False
    assert notify.status("x") is False
    assert notify.stopping() is False
    notify.stopping_on_signals([signal.SIGUSR1])  # installs nothing
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_sends_fields_as_one_datagram(
    clean_notify: None, receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    assert notify.ready("serving REST http://127.0.0.1:5678", main_pid=4242) is True
    assert receiver.receive(2) == {"READY": "1", "STATUS": "serving REST http://127.0.0.1:5678", "MAINPID": "4242"}
    assert notify.status("recovering\nline two") is True  # a newline would start a new field: flattened
    assert receiver.receive(2) == {"STATUS": "recovering line two"}
    assert notify.stopping("bye") is True
    assert receiver.receive(2) == {"STOPPING": "1", "STATUS": "bye"}


def test_claim_socket_takes_the_address_out_of_the_environment(
    clean_notify: None, receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    assert notify.claim_socket() == receiver.address
    assert "NOTIFY_SOCKET" not in os.environ  # what gunicorn and any child process would read
    assert notify.claim_socket() == receiver.address  # a second claim keeps the first one's address
    assert notify.status("claimed") is True
    assert receiver.receive(2) == {"STATUS": "claimed"}


@pytest.mark.parametrize("address", ["/nonexistent/dir/notify.sock", "@proximadb-nobody-listens", "vsock:2:9999"])
def test_failure_is_logged_at_debug_and_never_raises(
    clean_notify: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    with caplog.at_level(logging.DEBUG, logger="proximadb.notify"):
        assert notify.notify("READY=1") is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert address in caplog.text


def test_stopping_on_signals_notifies_once_then_runs_the_previous_handler(
    clean_notify: None, receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    seen: list[int] = []
    old_usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    old_usr2 = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        notify.stopping_on_signals([signal.SIGUSR1, signal.SIGUSR2], status_text="draining")
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)  # Python runs handlers between bytecodes; give it a moment
        assert seen == [signal.SIGUSR1, signal.SIGUSR2]
        assert receiver.receive(2) == {"STOPPING": "1", "STATUS": "draining"}
        assert receiver.receive(0.2) is None  # STOPPING=1 is sent once
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.signal(signal.SIGUSR2, old_usr2)


# --- the real daemon -----------------------------------------------------------------------------------------------


def _grpc_port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_daemon_notifies_ready_after_recovery_and_stopping_on_sigterm(
    tmp_path: Path, receiver: NotifyReceiver
) -> None:
    daemon = Daemon(tmp_path / "data", env={"NOTIFY_SOCKET": receiver.address})
    daemon.start(wait=False)
    assert daemon.proc is not None
    try:
        ready = receiver.wait_for("READY", timeout=60, proc=daemon.proc)
        # Readiness means ready: recovery is done and both listeners answer the moment systemd is told.
        assert "ready:" in daemon.logs()  # first: health() could wait in the listen backlog for a late worker
        assert daemon.health() is not None, daemon.logs()
        assert _grpc_port_open(daemon.grpc_port)
        assert ready["MAINPID"] == str(daemon.proc.pid)  # the gunicorn master that systemd started
        assert f"http://127.0.0.1:{daemon.rest_port}" in ready["STATUS"]
        assert f"127.0.0.1:{daemon.grpc_port}" in ready["STATUS"]
        before = receiver.messages[:-1]
        assert all("READY" not in m for m in before), before  # gunicorn's own early READY=1 is suppressed
        assert any(m.get("STATUS", "").startswith("recovering") for m in before), before

        daemon.proc.send_signal(signal.SIGTERM)
        stopping = receiver.wait_for("STOPPING", timeout=30)
        assert stopping["STOPPING"] == "1"
        assert daemon.proc.wait(timeout=60) == 0, daemon.logs()
        while receiver.receive(0.2) is not None:
            pass
        assert [m for m in receiver.messages if "READY" in m] == [ready]
        assert sum("STOPPING" in m for m in receiver.messages) == 1
    finally:
        daemon.stop()
