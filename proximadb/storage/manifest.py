"""A collection's manifest: which segments are live and where WAL replay starts.

Stored as ``collections/<uuid>/MANIFEST``, a checksummed JSON document of kind
``manifest`` (byte layout in docfile.py) replaced atomically. Body::

    {"format": 1,
     "checkpoint_seq": <every WAL frame with seq <= this is in the segments>,
     "next_segment_id": <id the next flush or compaction uses>,
     "segments": [{"id": <segment id>, "deletes_generation": <bitmap generation, 0 = none>}, ...]}

Anything in ``segments/`` that the manifest does not name (a flush or
compaction that crashed before its manifest swap) is removed on open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proximadb.errors import CorruptionError
from proximadb.storage.docfile import read_doc, write_doc

MANIFEST_FORMAT = 1
MANIFEST_NAME = "MANIFEST"


@dataclass(slots=True)
class SegmentRef:
    id: int
    deletes_generation: int = 0


@dataclass(slots=True)
class Manifest:
    checkpoint_seq: int = 0
    next_segment_id: int = 1
    segments: list[SegmentRef] = field(default_factory=list)

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
        )

    def save(self, directory: Path) -> None:
        write_doc(
            directory / MANIFEST_NAME,
            "manifest",
            {
                "format": MANIFEST_FORMAT,
                "checkpoint_seq": self.checkpoint_seq,
                "next_segment_id": self.next_segment_id,
                "segments": [{"id": s.id, "deletes_generation": s.deletes_generation} for s in self.segments],
            },
        )
