"""The segment indexes of a Collection: attach (loaded if valid) or schedule a background build, per
segment, of the default vector's index and of each named vector's (segment_index.py).

Mixed into :class:`proximadb.storage.collection.Collection`. A named dense vector (schema v4) is indexed
over its own rows with its own metric and its own ``indexing_algorithm`` and ``index_params`` (quantization
included), or the collection's when it declares none (``CollectionConfig.index_settings``), as
``named/<name>.<ext>``; until its index is ready (and when its algorithm is ``flat``) it is searched exactly.
"""

from __future__ import annotations

from typing import Any

from proximadb.storage import named_search, segment_index
from proximadb.storage.catalog import CollectionConfig
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.segment import Segment


class IndexPath(CollectionState):
    """Segment indexes: attach, build, rebuild on a settings change."""

    def _index_segment(self, seg: Segment, *, load_existing: bool, names: set[str | None] | None = None) -> None:
        """Attach the segment's HNSW/IVF indexes (the default vector's and each named vector's, each with its
        own settings: CollectionConfig.index_settings; loaded if valid), or schedule their background builds.
        ``names``: only these (None: the default vector); all when not given."""
        if self._closing:
            return  # a flush on close: the segment is indexed on the next open
        targets = [(None, self._metric), *((name, named_search.KERNEL_METRIC[v.distance_metric])
                                           for name, v in self.config.vectors.items() if name in seg.named)]
        for name, metric in targets:
            if names is not None and name not in names:
                continue
            algorithm, given = self.config.index_settings(name)
            if algorithm == "flat":
                segment_index.attach(seg, None, "flat", name)
                if name is not None:  # a named vector's index of earlier settings is stale
                    segment_index.remove_named(seg, name)
                continue
            params = segment_index.effective_params(algorithm, given, seg.rows)
            now = segment_index.current(seg, name)
            if now is not None and segment_index.matches(now, algorithm, params):
                continue  # a compaction grew it already (compaction.py), with these very settings
            if load_existing:
                index = segment_index.load(seg, algorithm, metric, params, name)
                if index is not None:
                    segment_index.attach(seg, index, algorithm, name)
                    continue
            self.index_builder.schedule(seg, algorithm, metric, params, name)

    def _index_wanted(self, seg: Segment, name: str | None) -> tuple[str, dict[str, Any]]:
        """(Index builder thread.) The algorithm and effective parameters the index of ``name`` (None: the
        default vector) of ``seg`` must have under the settings of now (a build of others is dropped)."""
        algorithm, given = self.config.index_settings(name)
        if algorithm == "flat":
            return algorithm, {}
        return algorithm, segment_index.effective_params(algorithm, given, seg.rows)

    def reconfigure(self, config: CollectionConfig) -> None:
        """New settings from the catalog; a changed index algorithm or parameters (the collection's, or a
        named vector's own) rebuilds the segment indexes they apply to."""
        with self._lock:
            old = self.config
            self.config = config
            changed: set[str | None] = {name for name in [None, *config.vectors]
                                        if old.index_settings(name) != config.index_settings(name)}
            if changed:
                for mt in [*self.sealed, self.memtable]:  # the memtable's rows: exact, then new graphs
                    mt.graph = None
                    mt.named_graph = {}
                self.memtable_indexer.kick(self.memtable)
                for seg in self.segments:
                    for name in changed:  # exact until the new index is ready
                        segment_index.attach(seg, None, "flat", name)
                    self._index_segment(seg, load_existing=False, names=changed)

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Block until every scheduled index build has finished; False on timeout."""
        return self.index_builder.wait_idle(timeout)
