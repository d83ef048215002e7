"""A replica's snapshot: how a replica that is behind its shard log's first entry catches up.

The log of a shard is purged below what every holder has checkpointed (proximadb/cluster/retention.py),
so a replica that was away (its node down, its slot moved, its disk wiped) may find the entries it needs
gone. It then takes a snapshot from a live holder of the same shard, installs it as its local
collection, and applies the log from the snapshot's checkpoint on (proximadb/cluster/node.py).

A snapshot is the collection's files at one checkpoint, as a backup captures them
(:func:`proximadb.tools.backup.capture_collection`: ``MANIFEST`` and the segments it names, hard-linked
in a stage directory first; a replica has no WAL, its log of record is the shard log), sent over the
holder's REST API (``GET /cluster/replicas/{replica}/snapshot``, a read: the cluster key may ask).

Byte format: a POSIX tar stream (ustar/pax headers, 512-byte blocks, uncompressed), in this order:

1. ``SNAPSHOT.json``: UTF-8 JSON ``{"format": 1, "replica": "<collection>.s<shard>",
   "description": "replica of <collection> shard <s>, log <log name>", "checkpoint_seq": N,
   "files": {"MANIFEST": {"bytes": B, "crc32c": C}, "segments/<seg>/<file>": {...}, ...}}``;
   ``checkpoint_seq`` is the manifest's: the last log entry the files hold;
2. every file the document lists, under the path it lists (relative to the collection directory),
   as a regular file member;
3. the end-of-archive marker (two zero blocks).

The receiver (:func:`receive_snapshot`) takes only regular files with relative paths inside the target,
each listed, and checks every size and CRC32C before the files are used; any mismatch is a
CorruptionError and the partial directory is removed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from proximadb.errors import CorruptionError, UnavailableError
from proximadb.storage.docfile import fsync_dir
from proximadb.tools.backup import capture_collection, file_digest

log = logging.getLogger("proximadb.cluster")

SNAPSHOT_DOC = "SNAPSHOT.json"
SNAPSHOT_FORMAT = 1
_BLOCK = 512
_CHUNK = 1 << 20
FETCH_TIMEOUT = 60.0  # seconds without a byte before a download is given up


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def snapshot_stream(collection_dir: Path, stage: Path, replica: str, description: str) -> tuple[dict[str, Any],
                                                                                               Iterator[bytes]]:
    """Capture ``collection_dir`` into ``stage`` and return (its SNAPSHOT.json document, the tar stream's
    chunks). The stage is removed when the stream has been read to its end or closed."""
    try:
        manifest, _ = capture_collection(collection_dir, stage, replica)
        files = {str(p.relative_to(stage)): file_digest(p) for p in sorted(stage.rglob("*")) if p.is_file()}
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    doc = {"format": SNAPSHOT_FORMAT, "replica": replica, "description": description,
           "checkpoint_seq": manifest.checkpoint_seq, "files": files}

    def chunks() -> Iterator[bytes]:
        try:
            raw = json.dumps(doc, separators=(",", ":")).encode()
            yield _header(SNAPSHOT_DOC, len(raw)) + raw + _padding(len(raw))
            for rel, digest in files.items():
                yield _header(rel, digest["bytes"])
                with open(stage / rel, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield chunk
                yield _padding(digest["bytes"])
            yield b"\0" * (2 * _BLOCK)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    return doc, chunks()


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise CorruptionError(f"snapshot member {name!r} is not a relative path inside the collection")
    return path


def receive_snapshot(stream: IO[bytes], dest: Path) -> dict[str, Any]:
    """Unpack a snapshot tar from ``stream`` into ``dest`` (made anew) and check it; its document.
    CorruptionError (and ``dest`` removed) when anything is missing, extra, damaged or out of place."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        doc: dict[str, Any] | None = None
        seen: set[str] = set()
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    raise CorruptionError(f"snapshot member {member.name!r} is not a regular file")
                source = archive.extractfile(member)
                assert source is not None
                if doc is None:
                    if member.name != SNAPSHOT_DOC:
                        raise CorruptionError(f"a snapshot starts with {SNAPSHOT_DOC}, not {member.name!r}")
                    doc = _read_doc(source.read())
                    continue
                rel = _safe_member(member.name)
                if str(rel) not in doc["files"] or str(rel) in seen:
                    raise CorruptionError(f"snapshot member {member.name!r} is not listed in {SNAPSHOT_DOC} "
                                          f"(or comes twice)")
                seen.add(str(rel))
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                if file_digest(target) != doc["files"][str(rel)]:
                    raise CorruptionError(f"snapshot file {rel}: size or CRC32C differs from {SNAPSHOT_DOC}")
        if doc is None:
            raise CorruptionError("the snapshot is empty (no SNAPSHOT.json)")
        missing = sorted(set(doc["files"]) - seen)
        if missing:
            raise CorruptionError(f"the snapshot ended before {', '.join(missing[:5])}")
        for directory in sorted({p.parent for p in dest.rglob("*") if p.is_file()}, key=lambda d: -len(d.parts)):
            fsync_dir(directory)
        return doc
    except tarfile.TarError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise CorruptionError(f"the snapshot is not a readable tar stream: {exc}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _read_doc(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
        files = doc["files"]
        ok = (doc.get("format") == SNAPSHOT_FORMAT and isinstance(files, dict)
              and isinstance(doc.get("checkpoint_seq"), int) and isinstance(doc.get("description"), str))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"{SNAPSHOT_DOC} is not a snapshot document: {exc}") from exc
    if not ok:
        raise CorruptionError(f"{SNAPSHOT_DOC}: format {doc.get('format')!r} or its fields are not supported")
    for rel in files:
        _safe_member(rel)
    return doc


def fetch_snapshot(rest_url: str, replica: str, dest: Path, api_key: str | None = None) -> dict[str, Any]:
    """Download the snapshot of ``replica`` from the node at ``rest_url`` into ``dest``; its document.
    UnavailableError when the node cannot give one (down, no such replica, refused)."""
    url = f"{rest_url.rstrip('/')}/cluster/replicas/{urllib.parse.quote(replica, safe='')}/snapshot"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            return receive_snapshot(io.BufferedReader(response, _CHUNK), dest)
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace")
        raise UnavailableError(f"{rest_url} gave no snapshot of {replica}: HTTP {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UnavailableError(f"{rest_url} gave no snapshot of {replica}: {exc}") from exc
