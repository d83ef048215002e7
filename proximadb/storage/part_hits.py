"""One part's best ``k`` hits by (score descending, id ascending), whatever the order of its rows: the cut
of every part of an exact inverted-index search (``search_sparse``: sparse_search.py, ``search_text``:
text_search.py). Rows of equal score are cut at the k-th place by id, as the merge of the parts orders
them, so the answer does not change when a flush, a compaction or a reopen moves rows.

The compiled kernel (``index/inverted.pyx``) returns a part's best ``n`` rows exactly by (score descending,
row ascending): its heap ranks a hit below another of equal score when its row is larger, and MaxScore
never prunes a row that ties with the n-th best (its bounds carry a slack). Its tie rule is by row, so:

- in a **segment** rows are in ascending id order (``ids.bin`` is sorted: flush.py and merge.py write
  rows by id), the smaller row is the smaller id and the kernel's best ``k`` are the answer as they are;
- in a **memtable** (and a sealed one) rows are in insertion order, so they are not. The kernel is asked
  for ``k + 1`` rows. Fewer come back: they are every candidate. The last one scores strictly below the
  k-th: every row tying with the k-th is among them (a row left out scores at most the last one).
  Otherwise rows of the k-th score may have been left out, and it is asked again for ``GROWTH`` times as
  many, at most the part's row count (then it returns every candidate): :func:`widened`. Of the rows
  returned, those scoring at least the k-th are sorted by (score descending, id) and the first ``k`` kept.

So a memtable costs one kernel call as before (for ``k + 1`` rows) unless rows tie at the k-th place, and
one more scoring of the part per retry when they do: log4(ties / k) of them. Measured on a 20,000-row
memtable (one kernel call ~30 us): BM25 queries whose k-th score ties with hundreds of rows took 2 calls;
binary sparse vectors (every score a small integer) 3; 4x takes fewer calls than 2x, whose ask stays
smaller but whose calls cost as much each (scoring the part's postings, not the heap, is the cost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from proximadb.storage.segment import Segment

GROWTH = 4
Search = Callable[[int], tuple[np.ndarray, np.ndarray]]


def part_best(owner: Any, search: Search, k: int, rows: int) -> list[tuple[float, str, Any, int]]:
    """The best ``k`` hits of the part ``owner`` (a Segment or a memtable snapshot, of ``rows`` rows) by
    (score descending, id), as (score, id, owner, row), best first. ``search(n)`` is the kernel's best ``n``
    candidate rows of the part: (rows, scores), best first, ties to the smaller row (see the module's
    documentation)."""
    ids = owner.ids
    if isinstance(owner, Segment):  # rows in id order: the kernel's cut is the answer
        found, scores = search(k)
        return [(s, ids[r], owner, r) for r, s in zip(found.tolist(), scores.tolist(), strict=True)]
    found, scores = search(k + 1)
    if found.shape[0] > k:
        kth = float(scores[k - 1])
        found, scores = widened(search, found, scores, rows, lambda last: last >= kth)
    n = found.shape[0]
    if n > k:  # only the rows scoring at least the k-th can be among the best k
        n = int(np.searchsorted(-scores, -scores[k - 1], side="right"))
    hits = [(s, ids[r], owner, r) for r, s in zip(found[:n].tolist(), scores[:n].tolist(), strict=True)]
    hits.sort(key=lambda hit: (-hit[0], hit[1]))
    return hits[:k]


def widened(search: Search, found: np.ndarray, values: np.ndarray, limit: int,
            may_tie: Callable[[float], bool]) -> tuple[np.ndarray, np.ndarray]:
    """An exact part's cut asked again for ``GROWTH`` times as many (at most ``limit``, its rows) while it
    returned as many as asked (``found``, best first; -1 pads a short answer) and its last value
    ``may_tie`` with the bound being cut at: a row it left out may then tie with that bound."""
    width = found.shape[0]
    while 0 < width < limit and found.shape[0] == width and found[-1] >= 0 and may_tie(float(values[-1])):
        width = min(GROWTH * width, limit)
        found, values = search(width)
    return found, values
