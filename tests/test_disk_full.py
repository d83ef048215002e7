"""Disk full: a real daemon on a 24 MiB tmpfs.

Once the space runs out, writes fail with DiskFullError (code ``disk_full``,
HTTP 507, gRPC RESOURCE_EXHAUSTED) and nothing of a refused write is kept;
reads keep working; after a filler file is deleted, writes succeed again
without a restart (ENOSPC on a WAL append cuts the partial frame and keeps the
log usable; ENOSPC/EIO from fdatasync would still fail-stop, see wal.py);
after a restart every acknowledged write is there. Needs root and
``mount -t tmpfs``; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.errors import DiskFullError, ProximaDBError

DIM = 64


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk-full test needs root and mount(8) to mount a size-limited tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _batch(tag: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"{tag}-{i}" for i in range(n)], rng.standard_normal((n, DIM)).astype(np.float32)


def test_disk_full_refuses_writes_keeps_reads_and_recovers(small_fs: Path) -> None:
    data = small_fs / "data"
    data.mkdir()
    daemon = Daemon(data, "--flush-bytes", "4000000").start()
    acked: dict[str, np.ndarray] = {}
    try:
        grpc_client = proximadb.connect_grpc(daemon.grpc_target, timeout=10)
        rest_client = proximadb.connect_rest(daemon.rest_url, timeout=10)
        grpc_client.create_collection("full", DIM, distance_metric="euclidean")
        ids, vecs = _batch("seed", 100, 0)
        grpc_client.insert_vectors("full", ids=ids, vectors=vecs)
        acked.update(zip(ids, vecs, strict=True))
        # Leave ~3 MiB free, then write until the disk is full.
        st = os.statvfs(small_fs)
        filler = small_fs / "filler"
        filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 3 * 1024 * 1024))
        errors: dict[str, ProximaDBError] = {}
        for k in range(1, 2000):
            client, proto = (grpc_client, "grpc") if k % 2 else (rest_client, "rest")
            ids, vecs = _batch(f"b{k}", 200, k)
            try:
                client.insert_vectors("full", ids=ids, vectors=vecs)
            except ProximaDBError as exc:
                errors.setdefault(proto, exc)
                if len(errors) == 2:
                    break
                continue
            acked.update(zip(ids, vecs, strict=True))
        assert set(errors) == {"grpc", "rest"}, f"disk never filled up: {len(acked)} records written"
        for proto, exc in errors.items():
            assert isinstance(exc, DiskFullError), f"{proto}: {type(exc).__name__} {exc.code}: {exc}"
            assert exc.code == "disk_full" and "disk full" in exc.message
        # The statuses on the wire: REST 507, gRPC RESOURCE_EXHAUSTED (rebuilt by the SDK from either).
        assert DiskFullError.http_status == 507 and DiskFullError.grpc_status == "RESOURCE_EXHAUSTED"
        # Reads keep working while the disk is full, on both protocols.
        for client in (grpc_client, rest_client):
            assert client.count("full") == len(acked)
            got = client.get_vector("full", "seed-7")
            assert got is not None
            np.testing.assert_array_equal(got["vector"], acked["seed-7"])
            hits = client.search("full", acked["seed-3"], k=1)
            assert hits[0]["id"] == "seed-3"
        # Free the space: writes succeed again without a restart.
        filler.unlink()
        for k, client in enumerate((grpc_client, rest_client)):
            ids, vecs = _batch(f"after{k}", 200, 10_000 + k)
            client.insert_vectors("full", ids=ids, vectors=vecs)
            acked.update(zip(ids, vecs, strict=True))
        assert grpc_client.count("full") == len(acked)
        grpc_client.close()
        rest_client.close()
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    # Nothing acknowledged is lost, and no refused write came back.
    with Daemon(data) as again, proximadb.connect_grpc(again.grpc_target, timeout=30) as client:
        assert client.count("full") == len(acked)
        ids = list(acked)
        for start in range(0, len(ids), 1000):
            for rec in client.get_vectors("full", ids[start : start + 1000]):
                np.testing.assert_array_equal(rec["vector"], acked[rec["id"]])
    print(f"\ndisk full: {len(acked)} acked records kept; refused with {errors['grpc'].code} on both protocols")
