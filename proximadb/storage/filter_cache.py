"""A sealed segment's cache of filter plans: the rows a filter lets through, kept for the next query
that asks the same filter (Lucene's query cache does the same per segment).

Planning a filter (filter_plan.py) costs time in proportion to the rows it matches: a year range
over 14% of a 1M-row segment scatters 143,000 row numbers into a mask, a category AND a range
tests 100,000 rows against the range, 0.3 to 1.2 ms on this 2-core machine, as much as the graph
walk it feeds. Users repeat filters (a tenant, a facet of the UI, the same category), and a
segment's payload index never changes (deletions and expiry are applied after the plan, per
search: search.py), so a plan stays right for the segment's lifetime.

Policy, so that one-off filters neither cost memory nor push the useful plans out:

* **admission on second sight**: a plan is kept only when its key was asked for before, among the
  last ``SEEN`` distinct keys (Lucene admits on frequency too);
* **bounded**: at most ``ENTRIES`` plans and ``BYTES`` bytes of arrays per segment (a mask is a
  byte per row of the segment, a row list 8 bytes per matching row); the least recently used go
  first, and a plan larger than the budget is never kept;
* the key is the filter's canonical form (:attr:`proximadb.filters.Filter.key`) plus everything
  else the plan depends on (the rows planned, the planner's thresholds); the kept arrays are made
  read-only, so that no reader can change what the next one gets.

``Collection.stats`` sums the segments' ``hits``, ``misses`` and ``nbytes`` (``filter_plan_cache_hits``,
``_misses``, ``_bytes``, over both protocols); a segment a compaction replaces takes its counts along.

Thread-safe: searches run in parallel (a lock guards the maps; planning itself runs outside it, so
two searches may plan the same filter at once, and the first to finish keeps it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from proximadb.storage.filter_plan import PartPlan

ENTRIES = 16  # plans kept per segment
BYTES = 32 << 20  # bytes of plan arrays kept per segment
SEEN = 64  # distinct keys remembered for admission


class PlanCache:
    """Filter plans of one segment by key; see the module docstring for the policy."""

    __slots__ = ("_bytes", "_lock", "_plans", "_seen", "hits", "misses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: OrderedDict[Hashable, tuple[PartPlan, int]] = OrderedDict()
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def plan(self, key: Hashable, make: Callable[[], PartPlan]) -> PartPlan:
        """The plan kept under ``key``, else ``make()``'s (kept when ``key`` was seen before)."""
        with self._lock:
            kept = self._plans.get(key)
            if kept is not None:
                self._plans.move_to_end(key)
                self.hits += 1
                return kept[0]
            self.misses += 1
            again = key in self._seen
            if again:
                del self._seen[key]
            else:
                self._seen[key] = None
                if len(self._seen) > SEEN:
                    self._seen.popitem(last=False)
        made = make()
        if again:
            self._keep(key, made)
        return made

    def _keep(self, key: Hashable, plan: PartPlan) -> None:
        size = sum(a.nbytes for a in (plan.rows, plan.mask) if a is not None)
        if size > BYTES:
            return
        for array in (plan.rows, plan.mask):
            if array is not None:
                array.flags.writeable = False
        with self._lock:
            if key in self._plans:
                return
            self._plans[key] = (plan, size)
            self._bytes += size
            while len(self._plans) > ENTRIES or self._bytes > BYTES:
                _, (_, dropped) = self._plans.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self._seen.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._plans)

    @property
    def nbytes(self) -> int:
        return self._bytes
