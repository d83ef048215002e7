"""What a search derives from a memtable (a BM25 index of its documents, the postings of its sparse vectors),
kept between searches while it still describes the memtable's rows: text_search.py and sparse_search.py.

An entry is keyed by the memtable's metadata (memtable_metadata.MemtableMetadata: the object lives as long
as the memtable, and the entry holds it, so its ``id()`` is not reused) and a name, and carries a ``stamp``:
what the derived value was made from, compared with ``==`` at the next search. A memtable's rows are only
appended and the metadata counts the rows whose map was replaced, so an equal row count and replacement
count mean the same rows. Entries of memtables no longer searched (flushed) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class MemtableKept(Generic[T]):
    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], tuple[Any, Any, T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def values(self) -> list[T]:
        return [entry[2] for entry in self._entries.values()]

    def get(self, snap: Any, name: str, stamp: Any, build: Callable[[], T]) -> T:
        """The value kept for ``snap``'s memtable and ``name`` if made from ``stamp``, else ``build()``, kept."""
        key = (id(snap.metadata), name)
        found = self._entries.get(key)
        if found is not None and found[0] is snap.metadata and found[1] == stamp:
            return found[2]
        value = build()
        self._entries[key] = (snap.metadata, stamp, value)
        return value

    def keep_only(self, snaps: Iterable[Any]) -> None:
        """Drop the entries of memtables other than ``snaps``' (flushed since)."""
        present = {id(snap.metadata) for snap in snaps}
        for key in [key for key in list(self._entries) if key[0] not in present]:  # list(): atomic
            self._entries.pop(key, None)
