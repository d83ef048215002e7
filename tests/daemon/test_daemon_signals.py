"""SIGINT / SIGTERM stop the daemon, master and worker, whenever they come during start-up.

Two races made the daemon outlive a stop signal until gunicorn's master killed
its worker after ``graceful_timeout`` (30 s); each has a deterministic
reproduction here, a harness that makes the signal land at the exact moment:

* between the fork of the worker and the moment it installs its own signal
  handlers: the stop signal was caught by the handler inherited from the master
  and lost;
* while the worker's main thread was inside ``ThreadPoolExecutor.submit``:
  gunicorn's SIGQUIT handler called ``shutdown()``, which waits for the lock
  that ``submit()`` holds in the same thread, forever;
* before the master had installed its handlers: Python's default SIGINT handler
  raised ``KeyboardInterrupt`` inside a weakref callback of the imports, where
  it is printed and dropped (now the stop signals are held from the program's
  first line until the master handles them: ``proximadb/cli/entry.py``).

Then the signal is sent at random moments of start-up, 50 times.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _daemon import Daemon
from _support import child_env

STOP_WITHIN = 20.0  # well under gunicorn's graceful_timeout (30 s), after which its master would SIGKILL

# Runs `proximadb serve ARGS` with a hook installed first; the hook is the only difference from a real daemon.
HARNESS = r"""
import os, signal, sys, time
HOOK
sys.argv = ["proximadb", *sys.argv[1:]]
from proximadb.cli.entry import main
main()
"""

# The worker, right after the fork and before its own signal handlers exist, asks the master to stop;
# the master's SIGQUIT to the worker arrives during the sleep.
AT_FORK = r"""
def _stop_the_master_from_the_new_worker():
    os.kill(os.getppid(), signal.SIGINT)
    time.sleep(1.0)
os.register_at_fork(after_in_child=_stop_the_master_from_the_new_worker)
"""

# The worker, inside ThreadPoolExecutor.submit() for its first REST connection (holding the executor's shutdown
# lock), asks the master to stop; the master's SIGQUIT to the worker arrives during the sleep.
IN_SUBMIT = r"""
import concurrent.futures.thread as _cft
_master, _original = os.getpid(), _cft.ThreadPoolExecutor._adjust_thread_count
def _adjust(self):
    if os.getpid() != _master and "grpc" not in self._thread_name_prefix and not getattr(sys, "_fired", False):
        sys._fired = True
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(1.0)
    return _original(self)
_cft.ThreadPoolExecutor._adjust_thread_count = _adjust
"""

# The master, while it imports the daemon module (before gunicorn's handlers exist), receives SIGINT inside a
# weakref callback: Python's default handler raises KeyboardInterrupt there, and a callback's exception is
# only printed ("Exception ignored in ..."), so the signal was lost. Callbacks like this one run during any
# import (importlib's module locks are weakly referenced), which is how a random stop hit it.
IN_IGNORED_CALLBACK = r"""
import importlib.abc, weakref
class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "proximadb.server.daemon" and not getattr(sys, "_fired", False):
            sys._fired = True
            class _Thing: pass
            def _callback(ref):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000): pass  # a pending Python-level handler runs at this loop's back jump
            thing = _Thing(); ref = weakref.ref(thing, _callback); del thing
        return None
sys.meta_path.insert(0, _Hook())
"""


class HookedDaemon(Daemon):
    def __init__(self, data_dir: Path, hook: str) -> None:
        super().__init__(data_dir)
        self.hook = hook

    def command(self) -> list[str]:
        return [sys.executable, "-c", HARNESS.replace("HOOK", self.hook), *super().command()[3:]]


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(d: Daemon, within: float) -> float:
    """Seconds until master and worker (the daemon's process group) are gone; fails after ``within``."""
    assert d.proc is not None
    started = time.monotonic()
    try:
        d.proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait(timeout=30)
        raise AssertionError(f"daemon still running {within}s after the stop signal:\n{d.logs()[-3000:]}") from None
    while not group_gone(d.proc.pid):
        if time.monotonic() - started > within:
            os.killpg(d.proc.pid, signal.SIGKILL)
            raise AssertionError(f"the worker outlived the master:\n{d.logs()[-3000:]}")
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_stop_signal_between_fork_and_the_workers_handlers_is_not_lost(tmp_path: Path) -> None:
    d = HookedDaemon(tmp_path / "data", AT_FORK).start(wait=False)
    wait_gone(d, STOP_WITHIN)
    assert "Handling signal: int" in d.logs()


def test_a_stop_signal_before_the_master_has_handlers_is_not_lost(tmp_path: Path) -> None:
    d = HookedDaemon(tmp_path / "data", IN_IGNORED_CALLBACK).start(wait=False)
    wait_gone(d, STOP_WITHIN)
    assert "KeyboardInterrupt" not in d.logs()  # not raised in the callback, where it would be lost
    assert "Handling signal: int" in d.logs()


def test_a_quit_signal_while_the_worker_submits_to_its_pool_does_not_deadlock(tmp_path: Path) -> None:
    d = HookedDaemon(tmp_path / "data", IN_SUBMIT).start(wait=False)
    deadline = time.monotonic() + 30
    while "ready:" not in d.logs():  # the worker is up; the first REST connection makes it submit
        assert time.monotonic() < deadline and d.proc is not None and d.proc.poll() is None, d.logs()
        time.sleep(0.02)
    d.health()
    wait_gone(d, STOP_WITHIN)
    assert "Handling signal: int" in d.logs()
    assert "stopped cleanly" in d.logs()


def test_stop_signals_at_random_moments_of_start_up(tmp_path: Path) -> None:
    """50 starts, each stopped by SIGINT or SIGTERM before, while or just after the worker boots."""
    rng = random.Random(20261204)
    probe = Daemon(tmp_path / "probe").start()  # how long a start takes on this machine, now
    ready_after = probe.started_in
    assert probe.stop() == 0
    slowest = 0.0
    for i in range(50):
        d = Daemon(tmp_path / f"d{i % 5}").start(wait=False)
        assert d.proc is not None
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        if i % 4 == 3:  # the moment of the report: right after /health first answered
            d.wait_ready(timeout=60)
        else:
            time.sleep(rng.uniform(0, ready_after * 1.3))
        d.proc.send_signal(sig)
        slowest = max(slowest, wait_gone(d, STOP_WITHIN))
        d._log.close()
    assert slowest < STOP_WITHIN


def test_sigterm_is_not_held_up_by_clients_that_never_finish_a_head(tmp_path: Path) -> None:
    """Connections still waiting for their head get the short linger kept-alive ones get, not graceful_timeout."""
    d = Daemon(tmp_path / "data").start()
    idle = socket.create_connection(("127.0.0.1", d.rest_port), timeout=10)
    stalled = socket.create_connection(("127.0.0.1", d.rest_port), timeout=10)
    stalled.sendall(b"POST /collections HTTP/1.1\r\nHost: x\r\n")
    assert d.health() is not None  # answered on a later connection: both were accepted before it (FIFO)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    took = wait_gone(d, STOP_WITHIN)
    idle.close()
    stalled.close()
    assert took < 8.0, took
    assert "stopped cleanly" in d.logs()


def test_the_package_import_holds_the_stop_signals_only_for_serve() -> None:
    """The first code of ours, either way of starting serve, is proximadb/__init__.py: it holds them there."""
    code = ("import signal, sys; sys.orig_argv = [sys.executable, *sys.argv[1:]]; import proximadb; "
            "print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))")
    for argv, held in ((["-m", "proximadb", "serve"], "True"), (["/venv/bin/proximadb", "serve"], "True"),
                       (["-m", "proximadb", "info"], "False"), (["script.py", "serve"], "False")):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=child_env(),
                             timeout=60)
        assert out.stdout.strip() == held, (argv, out.stdout, out.stderr)
