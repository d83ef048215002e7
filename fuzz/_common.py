"""Shared bits of the fuzz targets: atheris entry point (opt-in) and path setup.

Every target module defines ``one_input(data: bytes) -> None`` and ``ALLOWED``,
the exception types its decoder documents for bad input. ``one_input`` lets
those through (the caller treats them as a clean refusal) and anything else is
a finding. ``tests/test_fuzz_corpus.py`` runs the same functions without
atheris over the seed corpus plus deterministic mutations.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CORPUS = Path(__file__).resolve().parent / "corpus"


def run_atheris(one_input: Callable[[bytes], None], allowed: tuple[type[BaseException], ...]) -> None:
    """``python fuzz/fuzz_X.py [libFuzzer flags] [corpus dirs]`` under atheris."""
    import atheris  # opt-in dependency: pip install atheris

    def guarded(data: bytes) -> None:
        try:
            one_input(data)
        except allowed:
            pass

    # Python code (payload.py's datum checker, wal_codec, fastavro's pure-Python parts) gets
    # coverage feedback; the Cython modules only do if built with -fsanitize=fuzzer-no-link.
    atheris.instrument_all()
    atheris.Setup(sys.argv, guarded)
    atheris.Fuzz()
