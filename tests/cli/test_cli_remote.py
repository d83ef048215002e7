"""``proximadb collections`` and ``proximadb stats`` against a real daemon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _daemon import Daemon
from click.testing import CliRunner

import proximadb
from proximadb.cli.main import cli


def test_collections_and_stats_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    with Daemon(tmp_path / "data") as daemon:
        url = ["--url", daemon.rest_url]
        out = runner.invoke(cli, ["collections", "create", "docs", "-d", "4", "--metric", "euclidean",
                                  "--index", "hnsw", "--param", "M=8", *url])
        assert out.exit_code == 0 and out.output.startswith("created docs"), out.output
        with proximadb.connect_rest(daemon.rest_url) as client:
            client.insert_vectors("docs", ids=["a", "b"], vectors=np.eye(2, 4, dtype=np.float32))
        out = runner.invoke(cli, ["collections", "list", *url])
        assert out.exit_code == 0
        assert "docs" in out.output and "euclidean" in out.output and "hnsw" in out.output
        listed = json.loads(runner.invoke(cli, ["collections", "list", "--json", *url]).output)
        assert listed[0]["vector_count"] == 2
        out = runner.invoke(cli, ["stats", *url])
        assert out.exit_code == 0 and "docs: 2 vectors" in out.output and "via grpc" in out.output
        assert "status yellow (2 row(s) unindexed)" in out.output
        shown = json.loads(runner.invoke(cli, ["collections", "show", "docs", "--json", *url]).output)
        assert shown["index_params"] == {"M": 8} and shown["stats"]["memtable_rows"] == 2
        out = runner.invoke(cli, ["collections", "create", "ttl", "-d", "4", "--default-ttl", "60", "--json", *url])
        assert out.exit_code == 0 and json.loads(out.output)["default_ttl_seconds"] == 60, out.output
        bad = runner.invoke(cli, ["collections", "create", "ttl0", "-d", "4", "--default-ttl", "0", *url])
        assert bad.exit_code == 1 and "default_ttl_seconds must be between 1" in bad.output, bad.output
        bad = runner.invoke(cli, ["collections", "create", "../x", "-d", "4", *url])
        assert bad.exit_code == 1 and "invalid collection name" in bad.output
        bad = runner.invoke(cli, ["collections", "create", "y", "-d", "4", "--param", "M=x", *url])
        assert bad.exit_code == 2
        out = runner.invoke(cli, ["collections", "delete", "docs", "--yes", *url])
        assert out.exit_code == 0
        missing = runner.invoke(cli, ["collections", "show", "docs", *url])
        assert missing.exit_code == 1 and "does not exist" in missing.output
    down = runner.invoke(cli, ["stats", "--url", daemon.rest_url])
    assert down.exit_code == 1 and "Error" in down.output
