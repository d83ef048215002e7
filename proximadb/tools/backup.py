"""Backup and restore of a data directory, consistent even while a daemon writes to it.

A backup never takes the data directory's lock. Per collection it copies,
in this order:

1. ``MANIFEST`` (replaced atomically, so one read is one consistent version);
2. the segments it names: their data files never change, and the one bitmap
   generation it names is never rewritten;
3. the WAL files, which are append-only: a copy is a prefix of the log, maybe
   with a torn last frame that recovery cuts (those writes were not yet
   acknowledged at the moment the copy read them, or are in a later frame).

If a flush or compaction meanwhile deleted a named segment, or truncated WAL
files the copied manifest still needs (the copied WAL must start at or before
``checkpoint_seq + 1``), the collection is copied again, up to a few times.
To make that window small, a collection is first captured with hard links in
``<data dir>/.backup-stage-<pid>/`` (microseconds; a link keeps a file's
content even when the daemon deletes its name), then copied from there at
leisure; where links are impossible it falls back to copying.
The result is the collection as it was at one moment: what the daemon had
acknowledged up to then. Collections are copied one after another, so they
are each consistent, not consistent with each other.

Backup layout: the data directory's own layout (restorable by copying) plus
``BACKUP.pxdb``, a checksummed JSON document (docfile.py) listing every file
with its size and CRC32C. ``restore`` verifies every checksum before it
writes anything, into a directory that must not exist or be empty.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proximadb.errors import CorruptionError, ProximaDBError, ValidationError
from proximadb.storage.catalog import CATALOG_NAME, Catalog
from proximadb.storage.derived_file import DERIVED_NAMES
from proximadb.storage.docfile import fsync_dir, read_doc, write_doc
from proximadb.storage.manifest import MANIFEST_NAME, Manifest
from proximadb.storage.segment import NAMED_DIR, segment_dir_name
from proximadb.storage.wal import FILE_NAME as WAL_FILE_NAME
from proximadb.storage.wal_io import crc32c

log = logging.getLogger("proximadb.backup")
BACKUP_DOC = "BACKUP.pxdb"
BACKUP_FORMAT = 1
ATTEMPTS = 5
_CHUNK = 4 << 20


def _copy(src: Path, dst: Path) -> dict[str, int]:
    """Copy a file (fsynced); its size and CRC32C as copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    crc = size = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            crc = crc32c(chunk, crc)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return {"bytes": size, "crc32c": crc}


def file_digest(path: Path) -> dict[str, int]:
    """A file's size and CRC32C, as BACKUP.pxdb (and a cluster snapshot's SNAPSHOT.json) list them."""
    crc = size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = crc32c(chunk, crc)
            size += len(chunk)
    return {"bytes": size, "crc32c": crc}


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the file's content as of now, immune to later deletion; microseconds
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)


def _capture(src: Path, stage: Path) -> Manifest:
    """Hard-link one consistent version of a collection into ``stage`` (quick, so races are rare)."""
    if (src / MANIFEST_NAME).exists():
        shutil.copyfile(src / MANIFEST_NAME, stage / MANIFEST_NAME)
    manifest = Manifest.load(stage)
    for ref in manifest.segments:
        seg = segment_dir_name(ref.id)
        names = ["segment.pxdb", "vectors.f32", "ids.bin", "meta.avro"]
        if ref.deletes_generation:
            names.append(f"deletes-{ref.deletes_generation}.bitmap")
        names += [p.name for p in (src / "segments" / seg).glob("index.*") if not p.name.endswith(".tmp")]
        names += [name for name in DERIVED_NAMES if (src / "segments" / seg / name).is_file()]  # else rebuilt
        named = src / "segments" / seg / NAMED_DIR  # v4: named vectors' rows and indexes (segment.py)
        names += [f"{NAMED_DIR}/{p.name}" for p in sorted(named.glob("*")) if not p.name.endswith(".tmp")]
        for name in names:
            _link_or_copy(src / "segments" / seg / name, stage / "segments" / seg / name)
    wal_dir = src / "wal"
    wal_files = sorted(p for p in wal_dir.iterdir() if WAL_FILE_NAME.match(p.name)) if wal_dir.exists() else []
    for path in wal_files:
        _link_or_copy(path, stage / "wal" / path.name)
    if wal_files:
        first = int(WAL_FILE_NAME.match(wal_files[0].name).group(1))  # type: ignore[union-attr]
        if first > manifest.checkpoint_seq + 1:
            raise FileNotFoundError(f"WAL truncated past checkpoint {manifest.checkpoint_seq} during the capture")
    return manifest


def capture_collection(src: Path, stage: Path, what: str = "") -> tuple[Manifest, int]:
    """Hard-link one consistent version of the collection directory ``src`` into ``stage`` (made anew),
    capturing again when a flush or compaction raced it; (its manifest, the attempts it took).
    Also what a cluster replica's snapshot is made of (proximadb/cluster/snapshot.py)."""
    for attempt in range(1, ATTEMPTS + 1):
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        try:
            return _capture(src, stage), attempt
        except FileNotFoundError as exc:
            log.info("%s changed during the capture (%s); capturing it again (attempt %d)", what or src, exc,
                     attempt + 1)
            time.sleep(0.01 * attempt)
    raise ProximaDBError(f"{src} kept changing under the capture ({ATTEMPTS} attempts); try again")


def _copy_collection(src: Path, dst: Path, stage: Path, files: dict[str, dict[str, int]], rel: str) -> dict[str, Any]:
    manifest, attempt = capture_collection(src, stage, rel)
    # WAL files linked above may still grow (appends): the copy is then a longer prefix, still valid.
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        files[f"{rel}/{path.relative_to(stage)}"] = _copy(path, dst / path.relative_to(stage))
    shutil.rmtree(stage, ignore_errors=True)
    return {"checkpoint_seq": manifest.checkpoint_seq, "segments": len(manifest.segments),
            "wal_files": len(list((dst / "wal").glob("wal-*.log"))) if (dst / "wal").exists() else 0,
            "attempts": attempt}


def backup(data_dir: Path, dest: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Copy ``data_dir`` to ``dest`` (which must not exist yet); returns a summary."""
    if not (data_dir / CATALOG_NAME).exists():
        raise ValidationError(f"{data_dir} is not a ProximaDB data directory (no {CATALOG_NAME})")
    if dest.exists() and any(dest.iterdir()):
        raise ValidationError(f"backup destination {dest} exists and is not empty")
    started = time.monotonic()
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, int]] = {CATALOG_NAME: _copy(data_dir / CATALOG_NAME, dest / CATALOG_NAME)}
    catalog = Catalog(dest)  # the copied catalog decides which collections the backup holds
    collections = {}
    for uuid, cfg in catalog.collections.items():
        rel = f"collections/{uuid}"
        stage = data_dir / f".backup-stage-{os.getpid()}" / uuid  # same filesystem: hard links work
        try:
            collections[cfg.name] = _copy_collection(data_dir / rel, dest / rel, stage, files, rel)
        finally:
            shutil.rmtree(stage.parent, ignore_errors=True)
        if progress:
            progress(f"{cfg.name}: copied ({collections[cfg.name]})")
    total = sum(f["bytes"] for f in files.values())
    write_doc(dest / BACKUP_DOC, "backup", {
        "format": BACKUP_FORMAT, "source": str(data_dir), "created_at": time.time(), "files": files,
        "collections": collections,
    })
    fsync_dir(dest)
    return {"files": len(files), "bytes": total, "collections": collections,
            "seconds": round(time.monotonic() - started, 3)}


def verify(backup_dir: Path) -> dict[str, Any]:
    """Check every file listed in the backup against its size and CRC32C."""
    doc = read_doc(backup_dir / BACKUP_DOC, "backup")
    if doc.get("format") != BACKUP_FORMAT:
        raise CorruptionError(f"{backup_dir / BACKUP_DOC}: backup format {doc.get('format')} is not supported")
    for rel, want in doc["files"].items():
        path = backup_dir / rel
        if not path.is_file():
            raise CorruptionError(f"backup file {path} is missing")
        got = file_digest(path)
        size, crc = got["bytes"], got["crc32c"]
        if (size, crc) != (want["bytes"], want["crc32c"]):
            raise CorruptionError(f"backup file {path}: size/CRC32C {size}/{crc:08x}, expected "
                                  f"{want['bytes']}/{want['crc32c']:08x}")
    return doc


def restore(backup_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Verify the backup, then copy it into ``data_dir`` (absent or empty). Nothing is written on a bad backup."""
    doc = verify(backup_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValidationError(f"restore target {data_dir} exists and is not empty; restore into a new directory")
    tmp = data_dir.with_name(data_dir.name + ".restoring")
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel in doc["files"]:
        _copy(backup_dir / rel, tmp / rel)
    for directory in sorted({(tmp / rel).parent for rel in doc["files"]}, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)
    if data_dir.exists():
        data_dir.rmdir()
    os.replace(tmp, data_dir)
    fsync_dir(data_dir.parent)
    return {"files": len(doc["files"]), "bytes": sum(f["bytes"] for f in doc["files"].values()),
            "collections": sorted(doc["collections"])}
