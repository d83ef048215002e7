"""The daemon among others on one machine, and the server stack it was tested with.

* Two daemons on one machine share no gunicorn control socket; stopping one
  leaves the other serving.
* The dependency ranges of the server stack have upper bounds, which the
  installed versions meet.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from _daemon import Daemon

import proximadb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DIM = 4
ROOT = Path(__file__).resolve().parents[1]


def test_two_daemons_share_no_gunicorn_control_socket(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}  # gunicorn's default: ~/.gunicorn/gunicorn.ctl
    first = Daemon(tmp_path / "one" / "data", env=env)
    second = Daemon(tmp_path / "two" / "data", env=env)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with first, second:
        assert not (home / ".gunicorn").exists()
        assert "Control socket" not in first.logs() + second.logs()
        assert first.stop() == 0
        assert second.health() is not None and second.proc is not None and second.proc.poll() is None
        with proximadb.connect(second.rest_url) as client:
            client.create_collection("still", dimension=DIM)
            client.insert_vectors("still", ids=["x"], vectors=[[1.0] * DIM])
            assert client.search("still", [1.0] * DIM, k=1)[0]["id"] == "x"
        assert second.stop() == 0
    assert not (home / ".gunicorn").exists()
    assert list(tmp_path.rglob("*.ctl")) == []


def test_server_dependencies_have_upper_bounds_that_the_installed_versions_meet() -> None:
    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = {r.name: r for r in map(Requirement, declared)}
    for name in ("gunicorn", "falcon", "grpcio", "grpcio-health-checking", "protobuf"):
        spec = requirements[name].specifier
        assert any(s.operator in ("<", "~=", "==") for s in spec), f"{name}{spec} has no upper bound"
        assert spec.contains(version(name)), f"installed {name} {version(name)} is outside {spec}"
