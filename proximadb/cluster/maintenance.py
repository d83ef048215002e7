"""On-demand maintenance in cluster mode: ``compact`` and ``flush`` of a collection reach every replica.

A collection's data lives in its replicas (one local collection per shard per holder, each applying its
shard's log: :mod:`proximadb.cluster.applier`), so compacting or flushing "the collection" means doing it
on every replica of every shard. :func:`on_every_replica` runs one operation on each holder named by the
collection's shard map, all at once on the node's fan-out threads (:meth:`proximadb.cluster.fanout.Fanout.each`):

- a replica held here directly (``applier.collection``);
- a replica held by a peer through the peer's public REST route (``POST /collections/<address>/compact`` or
  ``/flush``) on the shard address ``<name>.s<shard>@<seq>~<ms>+<incarnation>``
  (:func:`proximadb.cluster.fanout.shard_address`; the peer waits for entry ``seq`` first, as for a read).
  Peers present the cluster key (``PROXIMADB_CLUSTER_KEY``): a read-only key, which
  :mod:`proximadb.server.auth` lets compact and flush shard addresses, and nothing else that writes.

Every replica is asked, not one per shard: each holder keeps its own files. ``seq`` is the read target of
the request's consistency level (:meth:`proximadb.cluster.backend.ClusterEngine.targets`; bounded by
default, which includes every write this node acknowledged), so a flush right after a write on this node
seals that write on every replica.

**A replica that does not answer** (its node is not live, has no running replica, times out, or the peer
refuses): the others are still done (both operations change no data and are safe to repeat), then the call
fails with UnavailableError naming each replica missed (``<collection> shard <s> on <node>: <why>``); the
caller repeats it once the node is back. A holder that is not live is not waited for. A peer's answer is
waited for as long as a fan-out read (``fanout.PEER_TIMEOUT``, 40 s, and the request's deadline): a replica
whose compaction takes longer is reported missed although it goes on there to the end (known limit: large
replicas want the call made again, which then finds little or nothing left to merge).

**The compaction report** (:func:`compaction_report`) keeps one node's fields, as totals over the replicas:
``segments_before``/``after``, ``rows_*`` and ``bytes_*`` summed, ``seconds`` the call's wall time, ``merged``
every replica's merged segment ids one after another (empty when no replica merged anything; ids are per
replica, so look at ``replicas`` to tell them apart), and ``replicas``: each replica's own report (one
node's fields, ``collection`` its local name ``<name>.s<shard>``) with ``node`` and ``shard``, by (shard,
node). One node answers ``replicas: []``.

**A collection's statistics** (:func:`collection_stats`, what ``stats`` and ``flush`` answer) keep one node's
fields too, so both protocols carry them (gRPC ``CollectionStats``): added up over one replica of each
shard (the one a read at the request's consistency level reaches, as ``count``), the counts summed
(``vectors``, ``memtable_*``, ``segments``, ``segment_rows``, ``indexed_*``, ``unindexed_rows``,
``index_builds_pending``, ``memtable_indexed_rows``, ``filter_plan_cache_*``), ``status`` green only when
every shard's replica is, the first error a replica reports, and the latest ``last_compaction_at``. The WAL
fields describe no local file here (the log of record is JetStream's): ``checkpoint_seq`` 0, ``wal_last_seq``
null, ``wal_bytes`` 0; ``proximadb cluster status`` gives each replica's applied sequence and lag.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from proximadb import deadline
from proximadb.cluster.fanout import LOCAL_WAIT, PASS_OVER, shard_address
from proximadb.cluster.names import incarnation_of
from proximadb.cluster.shard_map import ShardMap
from proximadb.deadline import wait_seconds
from proximadb.errors import PermissionDeniedError, RequestTimeoutError, UnavailableError

SUMMED = ("segments_before", "segments_after", "rows_before", "rows_after", "bytes_before", "bytes_after")
MISSED = (*PASS_OVER, PermissionDeniedError)  # a peer that refuses the cluster key is missed like one down


def on_every_replica(engine: Any, shard_map: ShardMap, targets: list[int], what: str,
                     local: Callable[[Any], dict[str, Any]],
                     remote: Callable[[Any, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """``local(collection)`` on each replica held here, ``remote(client, shard address)`` on each one a peer
    holds (``targets``: per shard, the entry it must have applied first); every answer with ``node`` and
    ``shard`` added, by (shard, node). UnavailableError naming the replicas missed (the others done)."""
    node = engine.node
    me = node.node.id
    name = shard_map.collection
    assert node.membership is not None
    live = {n.id: n for n in node.membership.nodes()}
    jobs = [(shard, holder) for shard in range(shard_map.shards)
            for holder in sorted(shard_map.replicas[shard] if shard < len(shard_map.replicas) else ())]

    def run(job: tuple[int, str]) -> dict[str, Any] | str:
        shard, holder = job
        try:
            if holder == me:
                applier = node.replica_applier(name, shard, shard_map)
                if applier is None:
                    raise UnavailableError("no replica runs there")
                wanted = node.serving_seq(name, shard, targets[shard])
                if wanted and not applier.wait_for(wanted, wait_seconds(LOCAL_WAIT)):
                    raise RequestTimeoutError(f"entry {wanted} not applied in time (applied {applier.applied_seq})")
                answer = local(applier.collection)
            else:
                info = live.get(holder)
                if info is None or not info.rest:
                    raise UnavailableError("the node is not live")
                address = shard_address(name, shard, targets[shard], deadline.remaining(), incarnation_of(shard_map))
                answer = remote(engine.fanout.client(info.rest), address)
        except MISSED as exc:
            return f"{name!r} shard {shard} on {holder}: {exc}"
        return {"node": holder, "shard": shard, **answer}

    done = engine.fanout.each(run, jobs)
    missed = [d for d in done if isinstance(d, str)]
    if missed:
        raise UnavailableError(f"{what} of {name!r} did not reach every replica (the others were done; repeat "
                               f"it once they are back): {'; '.join(missed)}")
    return [d for d in done if isinstance(d, dict)]


def compact(engine: Any, shard_map: ShardMap, targets: list[int]) -> dict[str, Any]:
    """Compact every replica of the collection; the report of the module's documentation."""
    started = time.monotonic()
    replicas = on_every_replica(engine, shard_map, targets, "compaction",
                                lambda collection: collection.compact(),
                                lambda client, address: client.compact(address))
    return compaction_report(shard_map.collection, replicas, time.monotonic() - started)


def compaction_report(name: str, replicas: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The cluster's report: one node's fields as totals, and ``replicas`` (module documentation)."""
    parts = [{key: value for key, value in r.items() if key != "replicas"} for r in replicas]
    report: dict[str, Any] = {"collection": name}
    report.update({key: sum(int(p[key]) for p in parts) for key in SUMMED})
    report.update(seconds=seconds, merged=[segment for p in parts for segment in p["merged"]], replicas=parts)
    return report


SUMMED_STATS = ("vectors", "memtable_rows", "memtable_bytes", "segments", "segment_rows", "indexed_segments",
                "index_builds_pending", "indexed_rows", "unindexed_rows", "memtable_indexed_rows",
                "filter_plan_cache_hits", "filter_plan_cache_misses", "filter_plan_cache_bytes")


def collection_stats(name: str, uuid: str, algorithm: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics of a collection from one replica's of each shard (the module's documentation), in
    one node's fields and their order (the .proto's)."""
    def first(key: str) -> Any:
        return next((p[key] for p in parts if p.get(key)), None)

    sums = {key: sum(int(p[key]) for p in parts) for key in SUMMED_STATS}
    compactions = [p["last_compaction_at"] for p in parts if p.get("last_compaction_at") is not None]
    return {
        "name": name, "uuid": uuid, "vectors": sums["vectors"], "memtable_rows": sums["memtable_rows"],
        "memtable_bytes": sums["memtable_bytes"], "segments": sums["segments"], "segment_rows": sums["segment_rows"],
        "checkpoint_seq": 0, "wal_last_seq": None, "last_flush_error": first("last_flush_error"),
        "indexing_algorithm": algorithm, "indexed_segments": sums["indexed_segments"],
        "index_builds_pending": sums["index_builds_pending"], "last_index_error": first("last_index_error"),
        "status": "green" if all(p["status"] == "green" for p in parts) else "yellow",
        "indexed_rows": sums["indexed_rows"], "unindexed_rows": sums["unindexed_rows"], "wal_bytes": 0,
        "last_compaction_at": max(compactions) if compactions else None,
        "memtable_indexed_rows": sums["memtable_indexed_rows"],
        "filter_plan_cache_hits": sums["filter_plan_cache_hits"],
        "filter_plan_cache_misses": sums["filter_plan_cache_misses"],
        "filter_plan_cache_bytes": sums["filter_plan_cache_bytes"],
    }


def flush(engine: Any, shard_map: ShardMap, targets: list[int]) -> list[dict[str, Any]]:
    """Flush every replica of the collection (each once it applied its shard's target); their statistics."""
    def local(collection: Any) -> dict[str, Any]:
        collection.flush()
        return collection.stats()  # type: ignore[no-any-return]

    return on_every_replica(engine, shard_map, targets, "flush", local, lambda client, address: client.flush(address))


__all__ = ["collection_stats", "compact", "compaction_report", "flush", "on_every_replica"]
