"""Helpers of tests/interop: clients in other languages (clients/go, clients/c), built from schemas/ and proto/ alone.

The test builds each example into a temporary folder with its ``build.sh``, runs it
against a real daemon and checks what it printed (ids, scores, distances,
metadata, expires_at) against the Python SDK's answers for the same data. A
missing toolchain or library makes the test skip, naming the Debian packages
to install (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
N, DIM, K, QUERY = 20, 8, 5, 0  # the examples' defaults
EXPIRES_AT_REC0 = 4102444800000000  # both examples give record 0 this expiry (v2)
SEARCHES = {"all": None, "en": {"lang": "en"}}  # the two searches each example runs


def build_or_skip(script: Path, out: Path, needs: list[str], packages: str) -> Path:
    """Run ``script out``; skip when a needed command or file is absent, fail when the build fails."""
    for need in needs:
        if not (Path(need).exists() if need.startswith("/") else shutil.which(need)):
            pytest.skip(f"{need} is missing: apt-get install {packages}")
    done = subprocess.run([str(script), str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    binaries = [p for p in out.iterdir() if p.is_file() and os.access(p, os.X_OK)]
    assert len(binaries) == 1, binaries
    return binaries[0]


def run_client(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def vector_of(i: int) -> np.ndarray:
    """Record i's vector, by the formula both examples use."""
    return np.array([((i * 37 + j * 101 + i * j * 13) % 97) / 97.0 - 0.5 for j in range(DIM)], dtype=np.float32)


def title_of(i: int) -> np.ndarray:
    """Record i's named vector "title" (schema v4), by the formula both examples use."""
    return np.array([((i * 13 + j * 7) % 11) / 11.0 - 0.5 for j in range(3)], dtype=np.float32)


def metadata_of(i: int) -> dict[str, Any]:
    return {"lang": "en" if i % 2 else "de", "rank": i, "weight": i * 0.25, "even": i % 2 == 0,
            "tags": [f"t{i % 3}", "all"], "note": None}


def parse_output(stdout: str) -> dict[str, Any]:
    """The examples' output lines (see the top of clients/go/main.go) as a dict."""
    out: dict[str, Any] = {"hits": {label: [] for label in SEARCHES}}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "hit":
            label, rank, id_, score, distance, rest = rest.split(" ", 5)
            metadata, _, expires = rest.rpartition(" ")
            assert int(rank) == len(out["hits"].setdefault(label, []))
            out["hits"][label].append({
                "id": id_, "score": np.float32(score), "distance": np.float32(distance),
                "metadata": json.loads(metadata), "expires_at": None if expires == "-" else int(expires),
            })
        elif word in ("schema_version", "inserted"):
            out[word] = int(rest)
        elif word in ("created", "done"):
            out[word] = rest
        else:
            raise AssertionError(f"unexpected output line {line!r}")
    return out


def check_against_sdk(daemon: Daemon, collection: str, stdout: str, version: int) -> None:
    """What the example stored and found is what the Python SDK stores and finds."""
    out = parse_output(stdout)
    assert out["schema_version"] == version
    assert out["created"] == f"{collection} {DIM}"
    assert out["inserted"] == N
    assert "done" in out
    with proximadb.connect(daemon.rest_url) as client:
        assert client.count(collection) == N
        ids = [f"rec-{i}" for i in range(N)]
        records = client.get_vectors(collection, ids)
        assert [r["id"] for r in records] == ids
        for i, rec in enumerate(records):
            np.testing.assert_array_equal(np.asarray(rec["vector"], dtype=np.float32), vector_of(i))
            assert rec["metadata"] == metadata_of(i)
            expected_expiry = EXPIRES_AT_REC0 if i == 0 and version >= 2 else None
            assert rec.get("expires_at") == expected_expiry
        for label, flt in SEARCHES.items():
            sdk_hits = client.search(collection, vector_of(QUERY), k=K, filter=flt)
            got = out["hits"][label]
            assert [h["id"] for h in got] == [h["id"] for h in sdk_hits], label
            assert len(got) == K
            for mine, theirs in zip(got, sdk_hits, strict=True):
                assert mine["score"] == np.float32(theirs["score"]), (label, mine, theirs)
                assert mine["distance"] == np.float32(theirs["distance"]), (label, mine, theirs)
                assert mine["metadata"] == theirs["metadata"]
                # a v1 answer has no expires_at field at all
                assert mine["expires_at"] == (theirs.get("expires_at") if version >= 2 else None)
        if version >= 4:  # the named vector "title": stored as sent, searched with using="title"
            for i, rec in enumerate(records):
                np.testing.assert_array_equal(rec["named_vectors"]["title"], title_of(i))
            sdk_hits = client.search(collection, title_of(QUERY), k=K, using="title")
            got = out["hits"]["title"]
            assert [h["id"] for h in got] == [h["id"] for h in sdk_hits] and len(got) == K
            for mine, theirs in zip(got, sdk_hits, strict=True):
                assert mine["score"] == np.float32(theirs["score"]), (mine, theirs)
                assert mine["distance"] == np.float32(theirs["distance"]), (mine, theirs)
        else:
            assert "title" not in out["hits"]
        best = out["hits"]["all"][0]  # the query is record 0's vector
        assert (best["id"], best["expires_at"]) == ("rec-0", EXPIRES_AT_REC0 if version >= 2 else None)


def only_v1_schemas(tmp_path: Path) -> Path:
    """A schemas folder holding only v1: the example must negotiate version 1."""
    root = tmp_path / "schemas-v1-only"
    shutil.copytree(SCHEMAS / "v1", root / "v1")
    return root
