"""Proof that a directory is what an interrupted operation left behind.

At open, a directory that no catalog or manifest names is deleted only when a
crash is proven (integrity.py); anything else is quarantined. The proofs are
written *before* the operation they prove:

* ``<name>.tmp``: a directory still being built (:func:`new_dir`).
* ``PENDING``: an empty file that every new segment directory
  (``segments/seg-<id>/PENDING``) and collection directory
  (``collections/<uuid>/PENDING``) is born with: :func:`new_dir` creates it in
  the temporary directory, before the rename that gives the directory its
  name. It is removed (:func:`settle`) only once the manifest or catalog that
  names the directory is durable. Found in a directory nothing names, it
  proves the commit never happened; found in a named one, it is stale and
  removed at open.
* ``<name>.deleting``: a directory being removed (:func:`discard`): renamed
  first, then deleted, so a crash half-way through the deletion still leaves
  proof of it.

A directory that a committed manifest or catalog dropped is proven by that
document itself: it lists it (manifest ``retired``, catalog ``dropped``) until
the directory is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from proximadb.storage.docfile import fsync_dir

PENDING = "PENDING"
TEMPORARY_SUFFIXES = (".tmp", ".deleting")


def is_temporary(name: str) -> bool:
    return name.endswith(TEMPORARY_SUFFIXES)


def is_pending(directory: Path) -> bool:
    return (directory / PENDING).is_file()


@contextlib.contextmanager
def new_dir(final: Path) -> Iterator[Path]:
    """Build a directory under a temporary name; it takes ``final`` (with its PENDING marker) once complete.

    The body fills the yielded temporary directory (and fsyncs its files); then
    it is fsynced, renamed to ``final`` and the parent fsynced. On any error
    nothing is left behind and the error is raised.
    """
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    renamed = False
    try:
        os.close(os.open(tmp / PENDING, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        yield tmp
        fsync_dir(tmp)
        os.rename(tmp, final)
        renamed = True
        fsync_dir(final.parent)
    except BaseException:
        if renamed:
            discard(final)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def discard(path: Path) -> None:
    """Remove a directory (or file): rename it to ``<name>.deleting``, then delete it. Never raises."""
    doomed = path
    if not is_temporary(path.name):
        doomed = path.with_name(path.name + ".deleting")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        except OSError:
            doomed = path  # cannot rename (read-only?): delete what can be deleted
    if doomed.is_dir() and not doomed.is_symlink():
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            doomed.unlink()


def clear_pending(directory: Path) -> None:
    """The directory is committed: drop its PENDING marker (no fsync: in a named directory a stale one is harmless)."""
    with contextlib.suppress(OSError):
        (directory / PENDING).unlink(missing_ok=True)


def settle(committed: Iterable[Path] = (), dropped: Iterable[Path] = ()) -> None:
    """After a durable commit: the directories it named lose their PENDING marker, those it dropped go."""
    for path in committed:
        clear_pending(path)
    for path in dropped:
        discard(path)
