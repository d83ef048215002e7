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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from proximadb import deadline
from proximadb.cluster.fanout import LOCAL_WAIT, PASS_OVER, shard_address, wait_seconds
from proximadb.cluster.node import incarnation_of
from proximadb.cluster.shard_map import ShardMap
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


def flush(engine: Any, shard_map: ShardMap, targets: list[int]) -> list[dict[str, Any]]:
    """Flush every replica of the collection (each once it applied its shard's target); their statistics."""
    def local(collection: Any) -> dict[str, Any]:
        collection.flush()
        return collection.stats()  # type: ignore[no-any-return]

    return on_every_replica(engine, shard_map, targets, "flush", local, lambda client, address: client.flush(address))


__all__ = ["compact", "compaction_report", "flush", "on_every_replica"]
