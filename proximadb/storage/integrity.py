"""Start-up checks of a data directory: nothing is deleted on a guess.

At open, the engine compares what is on disk with what the catalog and each
manifest name (:func:`open_catalog` from engine.py, :func:`open_manifest`
from collection.py). Every entry of ``collections/`` and of a collection's
``segments/`` is

* named by the catalog / manifest: kept (a stale PENDING marker is removed);
* proven to be what an interrupted operation left: a temporary name, a
  PENDING marker, or listed as dropped by the catalog (``dropped``) or the
  manifest (``retired``); see intents.py. Removed, with a WARNING;
* anything else: moved to ``<data dir>/quarantine/`` or
  ``collections/<uuid>/quarantine/``, with an ERROR saying what to do. Never
  deleted: a lost or replaced metadata file must not turn into lost data.

The open is refused (CorruptionError: one line naming the file and what to
do; nothing on disk changed) when metadata is missing next to data: no
``catalog.pxdb`` but collection directories, no ``MANIFEST`` but segment
directories, a collection the catalog names without its directory, a segment
the manifest names without its directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from proximadb.errors import CorruptionError
from proximadb.storage import intents
from proximadb.storage.catalog import Catalog
from proximadb.storage.derived_file import DERIVED_NAMES
from proximadb.storage.docfile import fsync_dir
from proximadb.storage.manifest import MANIFEST_NAME, Manifest
from proximadb.storage.segment import segment_dir_name

log = logging.getLogger("proximadb.integrity")

QUARANTINE = "quarantine"
RESTORE = ("copy it back from a backup of this data directory (or `proximadb restore` the whole backup into a new "
           "directory)")
NOTHING_CHANGED = "nothing was changed"


@dataclass(slots=True)
class _Survey:
    """One directory's entries, sorted by what may be done with them."""

    named: list[Path] = field(default_factory=list)
    leftovers: list[tuple[Path, str]] = field(default_factory=list)  # (path, its proof)
    unexplained: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # named, not on disk


def _survey(parent: Path, named: Collection[str], dropped: Collection[str], dropped_by: Path) -> _Survey:
    survey = _Survey()
    present = set()
    for path in sorted(parent.iterdir()):
        present.add(path.name)
        if path.name in named:
            survey.named.append(path)
        elif intents.is_temporary(path.name):
            survey.leftovers.append((path, "a temporary name"))
        elif path.name in dropped:
            survey.leftovers.append((path, f"dropped by {dropped_by.name}"))
        elif path.is_dir() and intents.is_pending(path):
            survey.leftovers.append((path, f"its {intents.PENDING} marker: never committed"))
        else:
            survey.unexplained.append(path)
    survey.missing = sorted(n for n in named if n not in present)
    return survey


def _shown(paths: list[Path]) -> str:
    names = ", ".join(p.name for p in paths[:3])
    return names + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _quarantine(path: Path, into: Path) -> Path:
    into.mkdir(exist_ok=True)
    target = into / path.name
    n = 1
    while target.exists():
        target = into / f"{path.name}.{n}"
        n += 1
    os.rename(path, target)
    fsync_dir(path.parent)
    fsync_dir(into)
    return target


def _settle(survey: _Survey, interrupted: str) -> None:
    """Act on a survey that raised no refusal: clear stale markers, remove proven leftovers."""
    for path in survey.named:
        if path.is_dir():
            intents.clear_pending(path)
    for path, proof in survey.leftovers:
        log.warning("removing %s, left by an interrupted %s (proof: %s)", path, interrupted, proof)
        intents.discard(path)


def open_catalog(data_dir: Path) -> Catalog:
    """Load the catalog and reconcile ``collections/`` with it (see the module docstring)."""
    catalog = Catalog(data_dir)
    root = catalog.collections_dir
    root.mkdir(exist_ok=True)
    survey = _survey(root, catalog.collections.keys(), set(catalog.dropped), catalog.path)
    if not catalog.path.exists() and survey.unexplained:
        n = len(survey.unexplained)
        raise CorruptionError(
            f"{catalog.path} is missing, but {root} holds {n} collection director{'y' if n == 1 else 'ies'} "
            f"({_shown(survey.unexplained)}) that only it can name: {RESTORE}, or move {root} away to start "
            f"with no collections; {NOTHING_CHANGED}"
        )
    if survey.missing:
        cfg = catalog.collections[survey.missing[0]]
        raise CorruptionError(
            f"collection {cfg.name!r} is in {catalog.path} but its directory {root / cfg.uuid} is missing: "
            f"{RESTORE}; {NOTHING_CHANGED}"
        )
    _settle(survey, "create or delete of a collection")
    for path in survey.unexplained:
        target = _quarantine(path, data_dir / QUARANTINE)
        log.error(
            "%s is not a collection of %s and nothing shows it was deleted: moved it to %s instead of deleting "
            "it. If %s was replaced by an older copy, stop proximadb and restore the data directory from a "
            "backup; otherwise delete %s once you are sure it is not needed",
            path, catalog.path, target, catalog.path.name, target,
        )
    return catalog


def open_manifest(directory: Path, name: str) -> Manifest:
    """Load a collection's manifest and reconcile ``segments/`` with it (see the module docstring)."""
    path = directory / MANIFEST_NAME
    manifest = Manifest.load(directory)
    segments = directory / "segments"
    survey = _survey(segments, {segment_dir_name(r.id) for r in manifest.segments},
                     {segment_dir_name(i) for i in manifest.retired}, path)
    if not path.exists() and survey.unexplained:
        raise CorruptionError(
            f"collection {name!r}: {path} is missing, but {segments} holds {len(survey.unexplained)} "
            f"segment(s) ({_shown(survey.unexplained)}) whose rows only it can name: {RESTORE}; {NOTHING_CHANGED}"
        )
    if survey.missing:
        raise CorruptionError(
            f"collection {name!r}: {segments / survey.missing[0]}, named by {path}, is missing: {RESTORE}; "
            f"{NOTHING_CHANGED}"
        )
    _settle(survey, "flush, compaction or migration")
    for entry in survey.unexplained:
        target = _quarantine(entry, directory / QUARANTINE)
        log.error(
            "collection %r: %s is not in %s and nothing shows an interrupted flush or compaction left it: moved "
            "it to %s instead of deleting it. If %s was replaced by an older copy, stop proximadb and restore "
            "the data directory from a backup; otherwise delete %s once you are sure its rows are not needed",
            name, entry, path, target, MANIFEST_NAME, target,
        )
    derived_tmp = [p for name in DERIVED_NAMES for p in segments.glob(f"*/{name}.tmp")]
    named_tmp = segments.glob("*/named/*.tmp*")  # a named vector's index save interrupted (segment_index.py)
    for leftover in [directory / f"{MANIFEST_NAME}.tmp", *segments.glob("*/index.*.tmp*"), *derived_tmp, *named_tmp]:
        if leftover.is_file():
            log.warning("collection %r: removing %s, left by an interrupted save", name, leftover)
            leftover.unlink(missing_ok=True)
    return manifest
