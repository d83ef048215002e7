"""The man pages under man/ are generated from the Click definitions and cannot drift from them.

If the first test fails, a command or option changed: run
``python -m proximadb.cli.manpages man/`` and commit the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from _support import child_env

from proximadb.cli import manpages
from proximadb.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
MAN_DIR = REPO / "man"
REGENERATE = "run `python -m proximadb.cli.manpages man/` and commit man/"


def _render_warnings(page: Path) -> tuple[str, str] | None:
    """(rendered text, warnings) from the first roff tool found, or None when there is none."""
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    if shutil.which("man"):
        cmd = ["man", "--warnings", "-E", "UTF-8", "-l", str(page)]
    elif shutil.which("groff"):
        cmd = ["groff", "-man", "-Tutf8", "-ww", str(page)]
    elif shutil.which("mandoc"):
        cmd = ["mandoc", "-T", "utf8", "-W", "warning", str(page)]
    else:
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout, proc.stderr


def test_committed_pages_match_the_click_definitions(tmp_path: Path) -> None:
    assert manpages.main([str(tmp_path)]) == 0
    generated = sorted(p.name for p in tmp_path.glob("*.1"))
    committed = sorted(p.name for p in MAN_DIR.glob("*.1"))
    assert generated == committed, f"pages differ from the commands: {REGENERATE}"
    for name in generated:
        assert (MAN_DIR / name).read_text() == (tmp_path / name).read_text(), f"man/{name} is stale: {REGENERATE}"


def test_every_command_has_a_page_with_every_option() -> None:
    pages = manpages.render_all()
    for node in manpages.walk(cli):
        text = pages[f"{node.page}.1"]
        assert f".TH {manpages._quoted(node.page.upper())}" in text
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "VERSION"):
            assert f"\n.SH {section}\n" in text, (node.page, section)
        for param in node.command.get_params(node.ctx):
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    assert f"\\fB{manpages.escape(opt)}\\fR" in text, (node.page, opt)
    assert {"proximadb.1", "proximadb-serve.1"} <= set(pages)
    serve = pages["proximadb-serve.1"]
    for section in ("OPTIONS", "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in serve
    assert "\\fB\\-\\-data\\-dir\\fR \\fIDIRECTORY\\fR" in serve
    assert "\\fBPROXIMADB_DATA_DIR\\fR" in serve and "\\fBNOTIFY_SOCKET\\fR" in serve


def test_check_reports_missing_stale_and_orphaned_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert manpages.main(["--check", str(tmp_path)]) == 1
    assert "proximadb.1: missing" in capsys.readouterr().err
    manpages.main([str(tmp_path)])
    assert manpages.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "proximadb-serve.1").write_text("stale\n")
    (tmp_path / "proximadb-gone.1").write_text(manpages.HEADER)
    assert manpages.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "proximadb-serve.1: out of date" in err and "proximadb-gone.1: no such command any more" in err
    manpages.main([str(tmp_path)])  # rewrites the stale page, removes the generated page of a gone command
    assert not (tmp_path / "proximadb-gone.1").exists()
    assert manpages.main(["--check", str(tmp_path)]) == 0


def test_generation_is_the_same_in_every_process(tmp_path: Path) -> None:
    # Hash randomisation changes set order between processes (Click keeps help option names in a set).
    outputs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / seed
        env = child_env(PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "proximadb.cli.manpages", str(out)], env=env, check=True,
                       capture_output=True, timeout=120, cwd=str(tmp_path))
        outputs.append({p.name: p.read_text() for p in sorted(out.glob("*.1"))})
    assert outputs[0] == outputs[1] == outputs[2] == manpages.render_all()


def test_escaping() -> None:
    assert manpages.escape("a\\b") == "a\\eb"
    assert manpages.escape("--data-dir") == "\\-\\-data\\-dir"
    assert manpages.escape(".SH fake\n'quote\nplain") == "\\&.SH fake\n\\&'quote\nplain"
    assert manpages.inline("run `proximadb serve`") == "run \\fBproximadb serve\\fR"


@click.group()
def _tool() -> None:
    """A made-up tool.

    .SH not a section
    'not a request either, and a back\\slash

    \b
    keep   these
      lines  as they are
    """


@_tool.group("wal")
def _wal() -> None:
    """WAL tools."""


@_wal.command("dump")
@click.option("--from-seq", type=int, help="Only frames with seq >= N.")
@click.option("--full/--brief", help="All fields.")
@click.option("--token", envvar="TOOL_TOKEN", help="Secret.")
@click.argument("data_dir", required=False)
def _dump(from_seq: int | None, full: bool, token: str | None, data_dir: str | None) -> None:
    """Print frames."""


@_tool.command("secret", hidden=True)
def _secret() -> None:
    """Not documented."""


def test_walks_nested_groups_and_renders_cleanly(tmp_path: Path) -> None:
    pages = manpages.render_all(_tool)
    assert sorted(pages) == ["proximadb-wal-dump.1", "proximadb-wal.1", "proximadb.1"]  # hidden: no page
    root = pages["proximadb.1"]
    assert "\\&.SH not a section" in root and "\\&'not a request" in root and "back\\eslash" in root
    assert ".nf\nkeep   these\n  lines  as they are\n.fi" in root
    dump = pages["proximadb-wal-dump.1"]
    assert "proximadb wal dump\n[\\fIOPTIONS\\fR] [\\fIDATA_DIR\\fR]" in dump
    assert "\\fB\\-\\-full\\fR / \\fB\\-\\-brief\\fR\n" in dump
    assert "\\fBTOOL_TOKEN\\fR\nSame as \\fB\\-\\-token\\fR." in dump
    assert ".BR proximadb (1),\n.BR proximadb\\-wal (1)\n" in dump
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
        rendered = _render_warnings(tmp_path / name)
        if rendered is not None:
            assert rendered[1] == "", f"{name}: {rendered[1]}"


def test_man_renders_proximadb_1_without_warnings() -> None:
    page = MAN_DIR / "proximadb.1"
    assert page.exists(), REGENERATE
    for path in sorted(MAN_DIR.glob("*.1")):
        rendered = _render_warnings(path)
        if rendered is None:
            pytest.skip("no man, groff or mandoc on this machine")
        text, warnings = rendered
        assert warnings == "", f"{path.name}: {warnings}"
        assert "NAME" in text and "SYNOPSIS" in text
        if path == page:
            assert "proximadb - ProximaDB: a vector database" in text
            assert "-V, --version" in text  # \- renders as a hyphen-minus that pastes into a shell
