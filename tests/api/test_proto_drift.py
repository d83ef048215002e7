"""The generated gRPC modules (proximadb/api/grpc/_generated, made at build time) match the .proto.

* the file descriptor embedded in proximadb_pb2 equals one compiled from the .proto now
  (independent of the grpcio-tools version);
* regenerating with proximadb/api/grpc/codegen.py gives byte-identical files (when the
  installed grpcio-tools is the one that generated them);
* the servicer implements every RPC of the service.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from proximadb.api.grpc import SERVICE_NAME, codegen
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.grpc.servicer import ProximaDBServicer

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / codegen.OUTPUT_REL

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (a build requirement) is not installed"
)


def _json_name(name: str) -> str:
    """protoc's default JSON name: drop each underscore and upper-case the letter after it."""
    return re.sub(r"_(.)?", lambda m: (m.group(1) or "").upper(), name)


def _without_default_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """The descriptor set carries every field's json_name, the generated module only custom ones."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(file)
    pending = list(out.message_type)
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        for field in message.field:
            if field.json_name == _json_name(field.name):
                field.ClearField("json_name")
    return out


def test_descriptor_matches_proto(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "proximadb.desc"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{ROOT / codegen.PROTO_ROOT_REL}", f"-I{well_known}",
        f"--descriptor_set_out={out}", str(ROOT / codegen.PROTO_ROOT_REL / codegen.PROTO_FILE_REL),
    ])
    assert rc == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert [f.name for f in compiled] == [codegen.PROTO_FILE_REL]
    embedded = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    stale = "proximadb_pb2 is stale: rebuild (python setup.py build_ext --inplace)"
    assert _without_default_json_names(embedded) == _without_default_json_names(compiled[0]), stale


def test_regenerated_files_are_identical() -> None:
    grpc_stub = (GENERATED / "proximadb_pb2_grpc.py").read_text(encoding="utf-8")
    made_with = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", grpc_stub)
    from importlib.metadata import version

    installed = version("grpcio-tools")
    if made_with is None or made_with.group(1) != installed:
        pytest.skip(f"generated with grpcio-tools {made_with and made_with.group(1)}, {installed} installed")
    fresh = codegen.render(ROOT)
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in GENERATED.iterdir() if p.is_file()}
    assert {name: on_disk.get(name) for name in fresh} == fresh


def test_generated_code_is_package_relative() -> None:
    for path in GENERATED.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "proximadb.v1 import" not in text and "import proximadb.v1" not in text, path
        if path.name != "__init__.py":
            assert text.startswith("# DO NOT MODIFY"), path
    assert pb.HealthRequest.__module__ == "proximadb.api.grpc._generated.proximadb_pb2"


def test_generated_code_is_not_committed() -> None:
    try:
        result = subprocess.run(
            ["git", "check-ignore", "-q", str(GENERATED / "proximadb_pb2.py")], cwd=ROOT, capture_output=True
        )
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert result.returncode == 0, f"{GENERATED} must be ignored by git"


def test_servicer_implements_every_rpc() -> None:
    service = pb.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
    assert service.full_name == SERVICE_NAME
    for method in service.methods:
        ours = getattr(ProximaDBServicer, method.name)
        assert ours is not getattr(pb_grpc.ProximaDBServicer, method.name), f"{method.name} is not implemented"
