"""Schema migration of a data directory: the logic behind ``proximadb migrate``.

What carries a schema version in a data directory:

* ``catalog.pxdb``: each collection's ``schema_version`` (the version its data is written in);
* each segment's ``segment.pxdb``: ``schema_version`` of its ``meta.avro`` rows (absent = 1);
* each WAL frame: the schema version of its body (avro strategy: of the client's payload).

The current code reads every supported version (Avro schema resolution), so a
migration is never needed to *open* old data; it rewrites the data so it no
longer depends on the old schemas. Per collection that needs it:

1. flush (the memtable, i.e. every WAL frame after the checkpoint, becomes a
   segment in the target version and the WAL is checkpointed past them);
2. rewrite every older segment into a new segment directory in the target
   version (the rows the checkpoint knows to be live; deletion bitmaps are
   applied), then swap the manifest atomically, then remove the old directory.
   The rewrite is compaction's streaming merge of one segment (storage/merge.py):
   memory is bounded by ``rewrite_chunk_rows`` (an engine option), not by the
   segment's size;
3. set the collection's ``schema_version`` in the catalog (last, so an
   interrupted migration is simply run again).

Crash safety comes from the engine's own protocol: a segment directory becomes
visible only when a saved manifest names it (``write_segment`` writes into
``seg-N.tmp`` and renames it, with its PENDING marker), the manifest and
catalog are replaced atomically, the manifest lists the segment it replaced as
``retired``, and on open the engine removes such proven leftovers
(storage/integrity.py). A kill -9 at any point therefore leaves the old or the
new state of each segment.

:func:`plan` only reads (no lock, no file written: ``--dry-run``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proximadb import progress
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from proximadb.errors import UnsupportedSchemaVersionError, ValidationError
from proximadb.storage import compaction
from proximadb.storage.catalog import CATALOG_NAME, Catalog
from proximadb.storage.disk_usage import directory_bytes
from proximadb.storage.docfile import read_doc
from proximadb.storage.manifest import Manifest
from proximadb.storage.segment import Segment, segment_dir_name
from proximadb.storage.segment_rewrite import SegmentRewrite
from proximadb.tools.wal_inspect import FrameRecord, WalTarget, iter_wal

Echo = Callable[[str], None]


class MigrationError(Exception):
    """The data directory cannot be migrated (not a data directory, bad target version)."""


@dataclass(slots=True)
class SegmentPlan:
    id: int
    schema_version: int
    rows: int
    bytes: int


@dataclass(slots=True)
class CollectionPlan:
    name: str
    uuid: str
    catalog_version: int
    segments: list[SegmentPlan] = field(default_factory=list)  # those older than the target
    segments_total: int = 0
    wal_frames: int = 0  # frames after the checkpoint (folded into a new segment by the flush)
    wal_old_frames: int = 0  # of which older than the target
    wal_bytes: int = 0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    def needs_migration(self, target: int) -> bool:
        return self.catalog_version < target or bool(self.segments) or self.wal_old_frames > 0


@dataclass(slots=True)
class MigrationPlan:
    data_dir: Path
    target: int
    collections: list[CollectionPlan]

    @property
    def pending(self) -> list[CollectionPlan]:
        return [c for c in self.collections if c.needs_migration(self.target)]


def _check_target(target: int) -> None:
    if target not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaVersionError(
            f"schema version {target} is not supported (this version of ProximaDB knows: "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
        )
    if target != CURRENT_SCHEMA_VERSION:
        raise ValidationError(
            f"migration writes the current schema version ({CURRENT_SCHEMA_VERSION}) only; "
            f"{target} is not a target (run without --to-schema-version, or with {CURRENT_SCHEMA_VERSION})"
        )


def plan(data_dir: str | Path, target: int = CURRENT_SCHEMA_VERSION) -> MigrationPlan:
    """What a migration to ``target`` would change. Reads only: takes no lock, writes nothing."""
    _check_target(target)
    root = Path(data_dir).expanduser()
    if not (root / CATALOG_NAME).exists():
        raise MigrationError(f"{root} is not a ProximaDB data directory (no {CATALOG_NAME})")
    catalog = Catalog(root)
    out = MigrationPlan(root, target, [])
    for uuid, cfg in sorted(catalog.collections.items(), key=lambda kv: kv[1].name):
        cdir = root / "collections" / uuid
        manifest = Manifest.load(cdir)
        cp = CollectionPlan(cfg.name, uuid, int(cfg.schema_version), segments_total=len(manifest.segments))
        for ref in manifest.segments:
            spath = cdir / "segments" / segment_dir_name(ref.id)
            desc = read_doc(spath / "segment.pxdb", "segment")
            version = int(desc.get("schema_version", 1))
            if version < target:
                cp.segments.append(SegmentPlan(ref.id, version, int(desc["rows"]), directory_bytes(spath)))
        for event in iter_wal(WalTarget(cdir / "wal", cfg.name, uuid, manifest.checkpoint_seq), decode=False):
            if isinstance(event, FrameRecord) and event.seq > manifest.checkpoint_seq:
                cp.wal_frames += 1
                cp.wal_bytes += event.frame_size
                if event.schema_version < target:
                    cp.wal_old_frames += 1
        out.collections.append(cp)
    return out


@dataclass(slots=True)
class CollectionResult:
    name: str
    segments_rewritten: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class MigrationResult:
    target: int
    collections: list[CollectionResult] = field(default_factory=list)
    already_current: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _rewrite_segment(col: Any, seg: Segment, target: int, task: progress.Task, done_before: int,
                     report: Callable[[int], None]) -> Segment | None:
    """Rewrite one segment in ``target``'s layout and swap it into the manifest (the collection lock is held).

    The shared segment rewrite (storage/segment_rewrite.py) does the transaction: a failure before the
    manifest commit removes the new segment and leaves ``seg`` in force.
    """
    with SegmentRewrite(col, "migration") as rewrite:
        plan_ = compaction.MergePlan([seg], [seg.persisted_deleted.copy()], rewrite.reserve_id())

        def step(done: int, _total: int) -> None:
            task.update(done_before + done)
            report(done_before + done)

        merged = compaction.merge_rows(plan_, step, col.options.rewrite_chunk_rows)
        new: Segment | None = None
        if merged.rows:
            extra: dict[str, Any] = {k: seg.descriptor[k] for k in ("created_at", "max_seq", "metric", "compacted_from")
                     if k in seg.descriptor}
            extra["migrated_from"] = {"segment": seg.id, "schema_version": seg.schema_version}
            new = rewrite.build(plan_.segment_id, merged.stream(), extra, schema_version=target)
            persisted_now = compaction.carry_deletions(plan_, merged, new, [])
            if persisted_now.any():
                rewrite.write_deletions(new, persisted_now)
        segments = [s for s in col.segments if s is not seg] if new is None else \
            [new if s is seg else s for s in col.segments]
        rewrite.commit(segments, [seg], not_durable="the migrated segment's old files stay until the next open")
    rewrite.finish()
    return new


def migrate(data_dir: str | Path, target: int = CURRENT_SCHEMA_VERSION, *, echo: Echo | None = None,
            engine_options: dict[str, Any] | None = None) -> MigrationResult:
    """Migrate every collection of ``data_dir`` to ``target`` (offline: takes the data directory's lock).

    ``engine_options``: StorageOptions for the engine it opens (``rewrite_chunk_rows``: rows per
    chunk of each segment's rewrite, which bounds its memory).

    Raises DataDirLockedError while a daemon holds the directory.
    """
    from proximadb.storage.engine import Engine

    say = echo or (lambda _msg: None)
    before = plan(data_dir, target)
    started = time.monotonic()
    result = MigrationResult(target)
    pending = {c.uuid for c in before.pending}
    result.already_current = [c.name for c in before.collections if c.uuid not in pending]
    if not pending:
        return result
    with Engine.open(before.data_dir, **{"auto_compact": False, **(engine_options or {})}) as engine:
        assert engine.catalog is not None
        for cp in before.collections:
            if cp.uuid not in pending:
                continue
            col = engine.collection(cp.uuid)
            res = CollectionResult(cp.name)
            t0 = time.monotonic()
            with col._lock:
                res.bytes_before = sum(directory_bytes(s.path) for s in col.segments)
                col.flush()  # WAL frames after the checkpoint -> a segment in the current version
                old = [s for s in col.segments if s.schema_version < target]
                total = sum(s.rows for s in old)
                say(f"{cp.name}: rewriting {len(old)} segment(s), {total:,} rows, to schema version {target}")
                done = 0
                with progress.track("migration", cp.name, total=total) as task:
                    for seg in old:
                        rows = seg.rows
                        seg_id = seg.id
                        new = _rewrite_segment(col, seg, target, task, done, lambda _n: None)
                        done += rows
                        elapsed = max(time.monotonic() - t0, 1e-9)
                        pct = 100 * done / total if total else 100.0
                        say(f"  segment {seg_id} -> {new.id if new is not None else '(empty, dropped)'}: "
                            f"{done:,}/{total:,} rows ({pct:.0f}%), {done / elapsed:,.0f} rows/s")
                        res.segments_rewritten += 1
                        res.rows += rows
                res.bytes_after = sum(directory_bytes(s.path) for s in col.segments)
            col.wait_for_indexes()
            cfg = engine.catalog.collections[cp.uuid]
            cfg.schema_version = target
            engine.catalog.save()  # last: an interrupted migration of this collection is simply redone
            res.seconds = round(time.monotonic() - t0, 3)
            result.collections.append(res)
    result.seconds = round(time.monotonic() - started, 3)
    return result
