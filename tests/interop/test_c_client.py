"""clients/c: REST with application/avro payloads (libavro-dev, libcurl), from schemas/ alone (see _interop.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _daemon import Daemon
from _interop import REPO, SCHEMAS, build_or_skip, check_against_sdk, only_v1_schemas, run_client

import proximadb
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION

PACKAGES = "gcc libc6-dev pkg-config libavro-dev libcurl4-openssl-dev"
NEEDS = ["cc", "pkg-config", "/usr/include/avro.h", "/usr/include/x86_64-linux-gnu/curl/curl.h"]


@pytest.fixture(scope="module")
def c_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_or_skip(REPO / "clients" / "c" / "build.sh", tmp_path_factory.mktemp("c"), NEEDS, PACKAGES)


def _run(c_client: Path, daemon: Daemon, collection: str, schemas: Path = SCHEMAS) -> subprocess.CompletedProcess[str]:
    return run_client([str(c_client), "-u", daemon.rest_url, "-s", str(schemas), "-c", collection])


def test_c_client_inserts_and_searches_like_the_sdk(c_client: Path, daemon: Daemon) -> None:
    done = _run(c_client, daemon, "c_current")
    assert done.returncode == 0, done.stderr
    check_against_sdk(daemon, "c_current", done.stdout, version=CURRENT_SCHEMA_VERSION)


def test_c_client_speaks_schema_v1(c_client: Path, daemon: Daemon, tmp_path: Path) -> None:
    done = _run(c_client, daemon, "c_v1", only_v1_schemas(tmp_path))
    assert done.returncode == 0, done.stderr
    check_against_sdk(daemon, "c_v1", done.stdout, version=1)


def test_c_client_reports_a_server_error(c_client: Path, daemon: Daemon) -> None:
    with proximadb.connect(daemon.rest_url) as client:
        client.create_collection("c_taken", 8)
        done = _run(c_client, daemon, "c_taken")
        assert done.returncode == 1
        assert "HTTP 409" in done.stderr and "c_taken" in done.stderr, done.stderr
        assert client.count("c_taken") == 0
