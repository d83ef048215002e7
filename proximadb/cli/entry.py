"""The ``proximadb`` program's first code: for ``serve``, hold the stop signals until the master handles them.

A SIGINT that reaches ``proximadb serve`` before gunicorn's master has installed
its handlers meets Python's default handler, which raises ``KeyboardInterrupt``
at the next bytecode. During the imports of start-up that bytecode is often a
weakref callback (``importlib._bootstrap._get_module_lock.<locals>.cb``), where
Python prints "Exception ignored in ..." and goes on: the signal was lost and
the daemon ran until SIGKILL (seen 2 times in 40 random-moment stops). So the
stop signals are blocked here, before anything else is imported (by the
package's ``__init__``, the first code of ours either way of starting
``serve``; :func:`main` again, which does nothing when they are held), and
:func:`release_stop_signals` unblocks them once the master's handlers exist
(``http_worker.Arbiter.init_signals``): a signal that came in between is
pending, and delivered then to gunicorn's handler. Other commands keep
Python's default behaviour (Ctrl-C interrupts them).

The data directory is recovered in the worker, after this point, so a stop
signal is never held for longer than the master's own start (imports and
configuration: well under a second).
"""

from __future__ import annotations

import signal
import sys

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP})
_held: set[int | signal.Signals] | None = None  # the mask before hold_stop_signals(), while the signals are held


def hold_stop_signals() -> None:
    """Block the stop signals of this thread (the main thread: the only one yet) until released."""
    global _held
    if _held is None:
        _held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """Restore the mask from before :func:`hold_stop_signals`; a pending stop signal is delivered now."""
    global _held
    if _held is not None:
        mask, _held = _held, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        hold_stop_signals()
    from proximadb.cli.main import main as cli_main

    try:
        cli_main()
    finally:
        release_stop_signals()  # serve returned or failed before its master started: nothing is held any more
