"""Top-k search over a Collection's segments (their HNSW/IVF index or an exact scan) and memtable.

Under the collection lock only a snapshot is taken (the arrays of the memtable
and of the sealed memtables a flush is writing, the segment list and their
deletion masks); the scans run without it, the kernels
with the GIL released. Each part yields (m, k) candidates, merged by distance.
Filters apply inside each scan (a mask), never after it, so k hits come back
whenever k rows match. The mask comes from each part's payload index
(``Filter.index_mask``: set operations, payload_index.py), never from a per-row walk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from proximadb import deadline
from proximadb.filters import Filter
from proximadb.index import distance
from proximadb.storage import expiry, segment_index
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.operations import NO_EXPIRY


class SearchPath(CollectionState):
    """The search core behind Collection.search_batch (which checks the arguments)."""

    def _search(self, queries: np.ndarray, k: int, flt: Filter | None, *, include_vectors: bool,
                include_metadata: bool, exact: bool | None, ef: int | None,
                nprobe: int | None) -> list[list[dict[str, Any]]]:
        with self._request_lock():  # a snapshot; the scan itself runs without the lock, GIL released
            now = expiry.now_us()  # rows expired by now are left out like deleted ones (expiry.py)
            sources: list[tuple[np.ndarray, np.ndarray, Any]] = [
                (seg.vectors, expiry.alive_mask(seg.alive(), seg.expires_at, now), seg)
                for seg in self.segments
            ]
            # The sealed memtables a flush is writing (sealed.py), then the memtable. The memtable's payload
            # index changes with every write: read under the lock, like the alive flags of both.
            fresh = []
            for mt in [*self.sealed, self.memtable]:
                snap = mt.snapshot()
                allowed = None if flt is None else flt.index_mask(mt.payload, snap.rows).view(np.uint8)
                fresh.append((snap, allowed))
        for snap, allowed in fresh:
            alive = expiry.alive_mask(snap.alive, snap.expires_at, now)
            sources.append((snap.vectors[: snap.rows], alive if allowed is None else alive & allowed, snap))
        memtables = {id(snap) for snap, _ in fresh}
        m = len(queries)
        cand_d: list[np.ndarray] = []
        cand_src: list[np.ndarray] = []
        cand_row: list[np.ndarray] = []
        for s_idx, (base, alive, owner) in enumerate(sources):
            if base.shape[0] == 0:
                continue
            if cand_d:  # between parts, never before the first
                deadline.check(f"searching collection {self.config.name!r} ({s_idx} of {len(sources)} parts done)")
            # A segment's payload index is immutable: evaluated without the lock.
            mask: np.ndarray | None = alive
            if id(owner) not in memtables:
                if flt is not None:
                    mask = alive & flt.index_mask(owner.payload, base.shape[0])
                elif owner.expires_at is None and owner.all_alive():
                    mask = None  # every row of the segment is a candidate: no mask to scan
            index = getattr(owner, "index", None)
            if index is not None and not exact:
                idx, dist = self._index_topk(index, queries, k, mask, ef, nprobe)
            else:
                idx, dist = self._topk(queries, base, k, mask)
            cand_d.append(dist)
            cand_row.append(idx)
            cand_src.append(np.full(idx.shape, s_idx, dtype=np.int32))
        if not cand_d:
            return [[] for _ in range(m)]
        all_d = np.concatenate(cand_d, axis=1)
        all_row = np.concatenate(cand_row, axis=1)
        all_src = np.concatenate(cand_src, axis=1)
        order = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        results = []
        for qi in range(m):
            hits = []
            for j in order[qi]:
                row = int(all_row[qi, j])
                if row < 0:
                    break
                _, _, owner = sources[int(all_src[qi, j])]
                hits.append(self._hit(owner, row, float(all_d[qi, j]), include_vectors, include_metadata))
            results.append(hits)
        return results


    def _topk(self, queries: np.ndarray, base: np.ndarray, k: int,
              mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) rows and distances, padded with -1 / inf. A thread team costs more than one query."""
        if len(queries) >= 4:
            return distance.topk_batch(queries, base, k, self._metric, mask=mask)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = distance.topk(q, base, k, self._metric, mask=mask)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    @staticmethod
    def _index_topk(
        index: Any, queries: np.ndarray, k: int, mask: np.ndarray | None, ef: int | None, nprobe: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Graph/IVF search; deleted and filtered-out rows are excluded inside the traversal (mask None: none)."""
        allowed = None if mask is None or mask.all() else mask
        knob = segment_index.search_options(index, ef=ef, nprobe=nprobe)
        if len(queries) >= 4:
            return index.search_batch(queries, k, filter_ids=allowed, **knob)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        dist = np.full((len(queries), k), np.inf, dtype=np.float32)
        for qi, q in enumerate(queries):
            rows, d = index.search(q, k, filter_ids=allowed, **knob)
            idx[qi, : len(rows)] = rows
            dist[qi, : len(rows)] = d
        return idx, dist

    def _hit(self, owner: Any, row: int, raw: float, with_vector: bool, with_metadata: bool) -> dict[str, Any]:
        if self._metric == "l2":
            dist = float(np.sqrt(max(raw, 0.0)))
            score = 1.0 / (1.0 + dist)
        elif self._metric == "cosine":
            dist = raw
            score = 1.0 - raw
        else:  # dot: the kernel returns the negated inner product
            dist = raw
            score = -raw
        hit: dict[str, Any] = {"id": owner.ids[row], "score": score, "distance": dist}
        if with_metadata:
            hit["metadata"] = owner.metadata[row]
        if with_vector:
            hit["vector"] = np.array(owner.vectors[row], dtype=np.float32)
        expires = owner.expires_at
        if expires is not None and expires[row] != NO_EXPIRY:
            hit["expires_at"] = int(expires[row])
        return hit
