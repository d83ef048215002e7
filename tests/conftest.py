"""Test-wide fixtures and checks.

* Every test session starts by importing the compiled modules; a build that
  silently fell back to source fails here, not in some later test.
* "Exception ignored" (an error swallowed by a Cython function without an
  error contract) reaches sys.unraisablehook; pyproject.toml turns pytest's
  warning about it into an error, so such a test fails.
* ``slow`` tests run only with ``PROXIMADB_SLOW=1`` (or ``-m slow``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import proximadb.native
from proximadb.tools.datasets import siftsmall

_DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = Path(os.environ.get("PROXIMADB_DATASETS", _DEFAULT_DATASETS))


def pytest_sessionstart(session: pytest.Session) -> None:
    # Development shortcut only (a module still being written); CI never sets it.
    if os.environ.get("PROXIMADB_SKIP_NATIVE_CHECK") != "1":
        proximadb.native.check_compiled()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PROXIMADB_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow test: set PROXIMADB_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not (DATASETS / "siftsmall" / "siftsmall_base.fvecs").exists():
        pytest.skip(f"datasets not found at {DATASETS} (set PROXIMADB_DATASETS)")
    return DATASETS


@pytest.fixture(scope="session")
def sift(datasets: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """siftsmall: (base, queries, ground truth)."""
    return siftsmall(datasets)
