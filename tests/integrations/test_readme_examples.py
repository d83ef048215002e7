"""The README's LangChain and LlamaIndex examples run as written, against a real daemon."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from _daemon import Daemon

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(heading: str, nth: int) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.findall(r"```python\n(.*?)```", section, re.S)[nth]


def test_langchain_example_runs(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    code = _example("## LangChain and LlamaIndex", 0)
    exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("a1 ProximaDB stores vectors {") and "'topic': 'db'" in first
    assert sorted(ast.literal_eval(second)) == ["a1", "a2"]


def test_llama_index_example_runs(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    code = _example("## LangChain and LlamaIndex", 1)
    exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})
    assert capsys.readouterr().out.strip() == "['ProximaDB stores vectors']"
