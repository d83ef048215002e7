"""tests/interop: one real daemon per test module (helpers in _interop.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _daemon import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("interop") / "data") as d:
        yield d
