"""A collection's manifest: which segments are live and where WAL replay starts.

Stored as ``collections/<uuid>/MANIFEST``, a checksummed JSON document of kind
``manifest`` (byte layout in docfile.py) replaced atomically. Body::

    {"format": 1,
     "checkpoint_seq": <every WAL frame with seq <= this is in the segments>,
     "next_segment_id": <id the next flush or compaction uses>,
     "segments": [{"id": <segment id>, "deletes_generation": <bitmap generation, 0 = none>}, ...],
     "retired": [<id of a segment this manifest or an earlier one dropped>, ...],
     "log": "external"}

``log`` names the collection's log of record; absent means ``"wal"``: the
collection's own ``wal/`` and ``checkpoint_seq`` numbers its frames. In cluster
mode (``StorageOptions.log_of_record = "external"``) it is ``"external"``: the
collection keeps no WAL, each write is an entry of its shard's log
(``proximadb/cluster/shard_log.py``) applied in log order
(``collection_apply.py``), and ``checkpoint_seq`` is the last *log* sequence
whose effects the segments hold (the applied sequence at the flush). A restart
resumes applying at ``checkpoint_seq + 1``; entries applied after it were in the
memtable only and are applied again. A directory is opened in the mode its
manifest names, never the other (collection.py refuses the mismatch).

``retired`` (absent in manifests written before it existed: empty) is the
proof that a segment directory no longer named was dropped by a committed
flush, compaction or migration: an id stays in it until its directory is
gone. At open, a segment directory the manifest does not name is removed only
with such proof (this list, a PENDING marker, a temporary name: intents.py);
anything else is quarantined, and a missing MANIFEST next to segments stops
the open (integrity.py).

Saving is write ``MANIFEST.tmp``, fsync, rename over ``MANIFEST``, fsync the
directory. :meth:`Manifest.save` tells its caller which side of the rename a
failure fell on: an OSError (ENOSPC, typically) means the old manifest is still
the one in force and ``MANIFEST.tmp`` has been removed, so the caller may roll
back what it wrote for the new one; :class:`ManifestNotDurableError` means the
rename happened (the new manifest is in force) but the directory fsync failed,
so a crash could still bring the old one back: the caller must keep what both
name (files of the old manifest, WAL frames after the old checkpoint) until a
later save succeeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from proximadb.errors import CorruptionError, StorageError
from proximadb.storage.docfile import encode_doc, fsync_dir, read_doc
from proximadb.storage.segment import segment_dir_name

MANIFEST_FORMAT = 1
MANIFEST_NAME = "MANIFEST"
LOGS_OF_RECORD = ("wal", "external")


class ManifestNotDurableError(StorageError):
    """The new manifest replaced the old one, but fsyncing the directory failed (see the module docstring)."""


@dataclass(slots=True)
class SegmentRef:
    id: int
    deletes_generation: int = 0


@dataclass(slots=True)
class Manifest:
    checkpoint_seq: int = 0
    next_segment_id: int = 1
    segments: list[SegmentRef] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    log_of_record: str = "wal"  # "external": checkpoint_seq is a shard log's sequence (see the module docstring)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.exists():
            return cls()
        body = read_doc(path, "manifest")
        if body.get("format") != MANIFEST_FORMAT:
            raise CorruptionError(f"{path}: manifest format {body.get('format')} is not supported")
        return cls(
            checkpoint_seq=int(body["checkpoint_seq"]),
            next_segment_id=int(body["next_segment_id"]),
            segments=[SegmentRef(int(s["id"]), int(s["deletes_generation"])) for s in body["segments"]],
            retired=[int(i) for i in body.get("retired", [])],
            log_of_record=_log_of_record(path, body.get("log", "wal")),
        )

    def retiring(self, directory: Path, dropped: Iterable[int]) -> list[int]:
        """``retired`` for the next manifest: this one's, less the directories already gone, plus ``dropped``."""
        still = [i for i in self.retired if (directory / "segments" / segment_dir_name(i)).exists()]
        return still + [i for i in dropped if i not in still]

    def save(self, directory: Path) -> None:
        """Replace the manifest atomically and durably.

        Raises OSError when the old manifest is still in force (nothing left behind),
        ManifestNotDurableError when the new one is in force but may not survive a crash.
        """
        body: dict[str, object] = {
            "format": MANIFEST_FORMAT,
            "checkpoint_seq": self.checkpoint_seq,
            "next_segment_id": self.next_segment_id,
            "segments": [{"id": s.id, "deletes_generation": s.deletes_generation} for s in self.segments],
            "retired": self.retired,
        }
        if self.log_of_record != "wal":  # absent: the WAL, as in every manifest written before cluster mode
            body["log"] = self.log_of_record
        data = encode_doc("manifest", body)
        path = directory / MANIFEST_NAME
        tmp = path.with_name(MANIFEST_NAME + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)  # the commit point
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        try:
            fsync_dir(directory)
        except OSError as exc:
            raise ManifestNotDurableError(f"{path} was replaced but fsyncing {directory} failed: {exc}") from exc


def _log_of_record(path: Path, value: object) -> str:
    if value not in LOGS_OF_RECORD:
        raise CorruptionError(f"{path}: unknown log of record {value!r} (known: {', '.join(LOGS_OF_RECORD)})")
    return str(value)
