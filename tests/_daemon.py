"""Start and stop a real ``proximadb serve`` process on free loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _support import child_env

from proximadb.free_ports import free_port


class Daemon:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.rest_port = free_port()
        self.grpc_port = free_port()
        self.args = list(args)
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir.parent / f"daemon-{self.rest_port}.log"
        self.started_in: float = 0.0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "proximadb", "serve",
            "--data-dir", str(self.data_dir),
            "--rest-port", str(self.rest_port),
            "--grpc-port", str(self.grpc_port),
            *self.args,
        ]

    def start(self, wait: bool = True, timeout: float = 30.0) -> Daemon:
        self._log = open(self.log_path, "a")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, text=True,
            env=child_env(**self.env), cwd=str(self.data_dir.parent),
            start_new_session=True,  # its own process group: kill9() takes master and worker at once
        )
        if wait:
            self.wait_ready(timeout)
            self.started_in = time.monotonic() - started
        return self

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)

    def get_data(self, path: str, timeout: float = 2.0) -> Any:
        """The ``data`` of a successful GET, or None (not answering, an error, not JSON)."""
        try:
            conn = self.connection(timeout)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return json.loads(body)["data"] if resp.status == 200 else None
        except (OSError, ValueError, KeyError):
            return None

    def health(self) -> dict[str, Any] | None:
        return self.get_data("/health")  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.logs()}")
            if self.health() is not None and "ready:" in self.logs():
                return
            time.sleep(0.02)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            raise AssertionError(f"daemon did not stop within {timeout}s of signal {sig}:\n{self.logs()}") from None
        self._log.close()
        return code

    def kill9(self) -> None:
        """SIGKILL the master and the worker together, as a power cut or OOM kill would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the worker is reaped by init; wait until it is gone
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self._log.close()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
