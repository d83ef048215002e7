"""clients/go: gRPC with Avro payloads, from proto/ and schemas/ alone (see _interop.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _daemon import Daemon
from _interop import REPO, SCHEMAS, build_or_skip, check_against_sdk, only_v1_schemas, run_client

import proximadb
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION

PACKAGES = ("golang-go golang-github-linkedin-goavro-dev golang-google-grpc-dev "
            "protobuf-compiler golang-goprotobuf-dev")
NEEDS = ["go", "protoc", "protoc-gen-go", "/usr/share/gocode/src/github.com/linkedin/goavro",
         "/usr/share/gocode/src/google.golang.org/grpc", "/usr/share/gocode/src/github.com/golang/protobuf/proto"]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_or_skip(REPO / "clients" / "go" / "build.sh", tmp_path_factory.mktemp("go"), NEEDS, PACKAGES)


def _run(go_client: Path, daemon: Daemon, collection: str, schemas: Path = SCHEMAS) -> subprocess.CompletedProcess[str]:
    return run_client([str(go_client), "-grpc", daemon.grpc_target, "-schemas", str(schemas),
                       "-collection", collection])


def test_go_client_inserts_and_searches_like_the_sdk(go_client: Path, daemon: Daemon) -> None:
    done = _run(go_client, daemon, "go_current")
    assert done.returncode == 0, done.stderr
    check_against_sdk(daemon, "go_current", done.stdout, version=CURRENT_SCHEMA_VERSION)


def test_go_client_speaks_schema_v1(go_client: Path, daemon: Daemon, tmp_path: Path) -> None:
    done = _run(go_client, daemon, "go_v1", only_v1_schemas(tmp_path))
    assert done.returncode == 0, done.stderr
    check_against_sdk(daemon, "go_v1", done.stdout, version=1)


def test_go_client_reports_a_server_error(go_client: Path, daemon: Daemon) -> None:
    with proximadb.connect(daemon.rest_url) as client:
        client.create_collection("go_taken", 8)
        done = _run(go_client, daemon, "go_taken")
        assert done.returncode == 1
        assert "AlreadyExists" in done.stderr and "go_taken" in done.stderr, done.stderr
        assert client.count("go_taken") == 0
