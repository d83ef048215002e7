"""Disk full: a real daemon on a 24 MiB tmpfs.

Once the space runs out, writes fail with DiskFullError (code ``disk_full``,
HTTP 507, gRPC RESOURCE_EXHAUSTED) and nothing of a refused write is kept;
reads keep working; after a filler file is deleted, writes succeed again
without a restart (ENOSPC on a WAL append cuts the partial frame and keeps the
log usable; ENOSPC/EIO from fdatasync would still fail-stop, see wal.py);
after a restart every acknowledged write is there. Needs root and
``mount -t tmpfs``; skipped with the reason otherwise.

Disk full during a flush: the write that triggers the flush is in the WAL
already, so it is acknowledged although the segment does not fit; the partial
segment is removed at once, the rows stay in the memtable and the WAL, the log
says so, and a write after space is freed flushes. Flush, index build and
compaction in detail, in-process: test_disk_full_storage.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon
from _support import size_limited_tmpfs

import proximadb
from proximadb.errors import DiskFullError, ProximaDBError

DIM = 64


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with size_limited_tmpfs(tmp_path / "small", "24m") as mnt:
        yield mnt


def check_after_restart(data: Path, acked: dict[str, tuple[np.ndarray, dict | None]]) -> None:
    """A fresh daemon on ``data`` holds exactly the acknowledged records (vector, and metadata unless None)."""
    with Daemon(data) as again, proximadb.connect_grpc(again.grpc_target, timeout=30) as client:
        assert client.count("full") == len(acked)
        ids = list(acked)
        for start in range(0, len(ids), 1000):
            for rec in client.get_vectors("full", ids[start : start + 1000]):
                vector, metadata = acked[rec["id"]]
                np.testing.assert_array_equal(rec["vector"], vector)
                if metadata is not None:
                    assert rec["metadata"] == metadata


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
    check_after_restart(data, {k: (v, None) for k, v in acked.items()})  # and no refused write came back
    print(f"\ndisk full: {len(acked)} acked records kept; refused with {errors['grpc'].code} on both protocols")


def _batch_with_metadata(tag: str, n: int, seed: int) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    ids, vecs = _batch(tag, n, seed)
    digits = np.random.default_rng(seed + 1).integers(0, 16, (n, 200))
    return ids, vecs, [{"text": "".join("0123456789abcdef"[d] for d in row)} for row in digits]


def _stats_once(client: proximadb.Client, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The collection's stats once ``done`` holds: a write that fills the memtable starts its flush in the
    background (storage/flush.py). A bound on waiting for it, not a timing assertion."""
    give_up = time.monotonic() + 60
    while True:
        stats = client.stats("full")
        if done(stats) or time.monotonic() > give_up:
            return stats
        time.sleep(0.05)


def test_disk_full_during_flush_acknowledges_the_write_and_loses_nothing(small_fs: Path) -> None:
    data = small_fs / "data"
    data.mkdir()
    daemon = Daemon(data, "--flush-bytes", "1500000").start()
    acked: dict[str, tuple[np.ndarray, dict[str, str]]] = {}

    def insert(client: proximadb.Client, tag: str, n: int, seed: int) -> None:
        ids, vecs, metas = _batch_with_metadata(tag, n, seed)
        client.insert_vectors("full", ids=ids, vectors=vecs, metadatas=metas)
        acked.update(zip(ids, zip(vecs, metas, strict=True), strict=True))

    try:
        grpc_client = proximadb.connect_grpc(daemon.grpc_target, timeout=10)
        rest_client = proximadb.connect_rest(daemon.rest_url, timeout=10)
        clients = (grpc_client, rest_client)
        grpc_client.create_collection("full", DIM, distance_metric="euclidean")
        for k in range(8):  # 4000 rows, ~360 bytes each in the memtable: just under --flush-bytes
            insert(clients[k % 2], f"a{k}", 500, k)
        assert grpc_client.stats("full")["segments"] == 0
        segments_dir = next((data / "collections").glob("*/segments"))
        # Room for the next batch's WAL frame (~250 kB) and for the 4500-row segment's vectors
        # (1.15 MB), not for the whole segment (~2.3 MB with ids and metadata).
        st = os.statvfs(small_fs)
        filler = small_fs / "filler"
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - (250_000 + 4500 * DIM * 4 + 300_000)))
        insert(rest_client, "trigger", 500, 100)  # its flush fails; the write is acknowledged all the same
        stats = _stats_once(grpc_client, lambda s: s["last_flush_error"] is not None)  # a background flush
        assert (stats["memtable_rows"], stats["segments"]) == (4500, 0), stats
        assert "No space left on device" in stats["last_flush_error"]
        assert list(segments_dir.iterdir()) == []  # the partial segment is gone
        assert "disk full while flushing collection full: 4500 records stay in the WAL/memtable" in daemon.logs()
        # Writes go on until the WAL itself is full, which refuses them with disk_full (507), never 500.
        refused = None
        for k in range(40):
            try:
                insert(clients[k % 2], f"b{k}", 500, 200 + k)
            except ProximaDBError as exc:
                refused = exc
                break
        assert isinstance(refused, DiskFullError), refused
        # Reads keep working on both protocols.
        for client in clients:
            assert client.count("full") == len(acked)
            got = client.get_vector("full", "trigger-7")
            assert got is not None and got["metadata"] == acked["trigger-7"][1]
            np.testing.assert_array_equal(got["vector"], acked["trigger-7"][0])
            assert client.search("full", acked["a3-5"][0], k=1)[0]["id"] == "a3-5"
        # Free the space: the next write (past the 1 s retry delay) flushes.
        filler.unlink()
        time.sleep(1.1)
        insert(grpc_client, "after", 100, 999)
        stats = _stats_once(grpc_client, lambda s: s["segments"] == 1)  # the flush it started, in the background
        assert (stats["memtable_rows"], stats["segments"], stats["last_flush_error"]) == (0, 1, None), stats
        assert len(list(segments_dir.iterdir())) == 1 and not any(segments_dir.glob("*.tmp"))
        grpc_client.close()
        rest_client.close()
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
    check_after_restart(data, acked)
    print(f"\ndisk full during flush: {len(acked)} acked records kept; the triggering write was acknowledged")
