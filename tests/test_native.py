"""proximadb/native.py lists every compiled module, so .ci/run's check covers them all."""

from __future__ import annotations

from pathlib import Path

from proximadb.native import COMPILED_MODULES, check_compiled

ROOT = Path(__file__).resolve().parent.parent


def test_every_cython_source_is_a_listed_compiled_module() -> None:
    sources = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "proximadb").rglob("*.pyx")}
    assert sources == set(COMPILED_MODULES)


def test_the_listed_modules_are_compiled_extensions() -> None:
    assert set(check_compiled()) == set(COMPILED_MODULES)
