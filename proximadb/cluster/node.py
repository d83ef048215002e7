"""One node of a cluster, in-process: membership, shard maps, the shard logs it writes to and the
replicas it applies. What ``serve --cluster`` will run; usable on its own from Python today.

A :class:`ClusterNode` owns a local engine opened in cluster mode (``log_of_record="external"``:
no local WAL) and one NATS connection (:class:`~proximadb.cluster.nats_session.NatsSession`):

- **Membership.** It joins with its :class:`~proximadb.cluster.membership.NodeInfo` and beats.
- **Collections.** :meth:`create_collection` makes the collection's shard logs, then writes its shard
  map, placed on the live nodes, with its ``spec`` (dimension and settings): every node creates the same
  local collection from it, one per shard it holds, named ``<collection>.s<shard>``. Only a create makes
  logs: an append, a replica or a purge that finds its log gone (dropped) fails at once, never makes it.
- **Sync.** A thread (every ``sync_interval`` seconds, and at once after a create) reads every
  shard map; replaces a map whose holders are no longer all live, or that lacks replicas now that
  nodes joined (:meth:`ShardMaps.rebalance`: revision-checked, so nodes that do this at once
  agree); and for each shard this node holds, creates its local collection when missing and runs a
  :class:`~proximadb.cluster.applier.ShardApplier` on the shard's log. A new holder starts from
  its checkpoint (0 when new) and replays the log. An applier of a shard the node no longer
  holds is stopped (its data stays).
- **Writes.** :meth:`insert` and :meth:`delete` route each id to its shard
  (:func:`~proximadb.cluster.placement.shard_of`), encode one versioned Avro frame per shard (the
  single-node wire format) and append it to the shard's log with a message id; they return each
  shard's log sequence once JetStream acknowledged it (on a quorum of its servers).
- **Reads.** :meth:`search` answers from the shards held here: with ``wait_for`` (what
  :meth:`insert` returned) it first waits until those entries are applied locally — read-your-
  writes. A shard held only elsewhere raises UnavailableError (fan-out to other nodes: not yet).

Logs and local replicas are named after the shard map (:mod:`proximadb.cluster.names`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from proximadb import idempotency
from proximadb.cluster import log_positions
from proximadb.cluster.applier import ShardApplier
from proximadb.cluster.membership import Membership, NodeInfo
from proximadb.cluster.names import (
    INCARNATION,
    incarnation_of,
    local_name,
    local_spec,
    log_name,
    replica_marker,
    shard_log_name,
)
from proximadb.cluster.nats_session import NatsSession
from proximadb.cluster.placement import shard_of
from proximadb.cluster.retention import LogRetention
from proximadb.cluster.shard_log import JetStreamLog, LogDeletedError, create_logs, delete_logs
from proximadb.cluster.shard_map import ShardMap, ShardMaps
from proximadb.cluster.snapshot import fetch_snapshot
from proximadb.codec.payload import encode_insert, encode_payload
from proximadb.deadline import wait_seconds
from proximadb.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    CorruptionError,
    LogUnavailableError,
    RequestTimeoutError,
    SnapshotRequiredError,
    UnavailableError,
)
from proximadb.storage.catalog import validate_named_vectors
from proximadb.storage.engine import Engine
from proximadb.storage.named_columns import check_named_batch

log = logging.getLogger("proximadb.cluster")


# settings update_collection changes on every replica (the description is the map's; default_ttl_seconds is
# fixed at create: replicas stamp it at apply, and one changed at different moments would expire rows differently)
# vectors: a named vector's own index settings may change (its name, dimension and metric may not)
RECONFIGURABLE = ("indexing_algorithm", "index_params", "filterable_metadata_fields", "text_analyzer",
                  "sparse_vectors", "vectors")
PLACED_WAIT = 5.0  # a read on a node a shard was just placed on waits this long for its replica to start


class ClusterNode:
    """See the module's documentation. ``start()`` joins; ``stop()`` leaves and checkpoints."""

    def __init__(self, engine: Engine, urls: list[str], node: NodeInfo, *, ttl: float = 10.0, replicas: int = 3,
                 sync_interval: float = 1.0, deadline: float = 30.0, log_retain: int = 10_000) -> None:
        self.engine = engine
        self.urls = urls
        self.node = node
        self.ttl = ttl
        self.replicas = replicas  # copies JetStream keeps of each stream and bucket
        self.sync_interval = sync_interval
        self.deadline = deadline
        self.session: NatsSession | None = None
        self.membership: Membership | None = None
        self.maps: ShardMaps | None = None
        self._logs: dict[tuple[str, int], JetStreamLog] = {}
        self._appliers: dict[tuple[str, int], ShardApplier] = {}
        self._known: dict[str, ShardMap] = {}
        self._start_seq: dict[tuple[str, int], int] = {}  # per replica: the log's last entry when it started
        self._failed: set[tuple[str, int]] = set()
        self.retention = LogRetention(node.id, log_retain)
        self.snapshots_installed = 0  # replicas this node rebuilt from a peer's snapshot
        self._lock = threading.RLock()
        self._sync_lock = threading.RLock()  # one sync() at a time (see there)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sync_errors = 0

    # -- life --

    def start(self) -> ClusterNode:
        for stale in self.engine.data_dir.glob(".snapshot-*"):  # stages an earlier process left (killed mid-way)
            shutil.rmtree(stale, ignore_errors=True)
        self.session = NatsSession(self.urls, f"node-{self.node.id}", deadline=self.deadline)
        self.membership = Membership(self.session, self.node, ttl=self.ttl, replicas=self.replicas,
                                     report=self.replica_positions).join()
        self.maps = ShardMaps(self.session, replicas=self.replicas)
        self.sync()
        self._thread = threading.Thread(target=self._run, name=f"cluster-sync-{self.node.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop syncing, stop every applier with a checkpoint, leave the membership, close the connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.deadline + 10)
        with self._lock:
            for applier in self._appliers.values():
                applier.stop()
            self._appliers.clear()
            for shard_log in self._logs.values():
                shard_log.close()
            self._logs.clear()
        if self.membership is not None:
            self.membership.leave()
        if self.session is not None:
            self.session.close()

    # -- collections --

    def create_collection(self, name: str, dimension: int, *, shards: int = 1, replication_factor: int = 1,
                          **settings: Any) -> ShardMap:
        """Create a sharded, replicated collection on the cluster's live nodes; its local replicas follow.

        The shard logs are made first (named after this incarnation: new), then the map, so every map names
        logs that exist. When the map is not written (the name exists) the logs go again; a map found to be
        this create's own (its answer was lost, its retry found it) is the create's. A crash between the two
        leaves logs no map names (never read; not reclaimed)."""
        maps, members = self._require()
        if maps.get(name) is not None:
            raise CollectionExistsError(f"collection {name!r} already has a shard map")
        incarnation = uuid.uuid4().hex[:12]
        spec = {"dimension": int(dimension), **settings, INCARNATION: incarnation}
        made = create_logs(self.urls, [log_name(name, shard, incarnation) for shard in range(shards)],
                           replicas=self.replicas, deadline=self.deadline, session=self.session)
        try:
            created = maps.create(name, shards, replication_factor, [n.id for n in members.nodes()], spec)
        except BaseException:
            found = maps.get(name)  # an outage here raises with the logs left: never delete a map's logs
            if found is None or incarnation_of(found[0]) != incarnation:
                delete_logs(made)
                raise
            created = found[0]
        with self._lock:
            self._logs.update(((name, shard), shard_log) for shard, shard_log in enumerate(made))
        self.sync()
        return created

    def drop_collection(self, name: str) -> None:
        """Remove the collection's shard map and delete its logs; every node then stops its replicas and
        deletes their local collections (at its next sync; this node at once)."""
        maps, _ = self._require()
        shard_map = self.shard_map(name)  # CollectionNotFoundError when there is none
        maps.drop(name)
        self.sync()
        for shard in range(shard_map.shards):
            with contextlib.suppress(LogDeletedError):  # gone already (a drop racing this one)
                self._log(name, shard, shard_map).delete()
        with self._lock:
            for key in [key for key in self._logs if key[0] == name]:
                self._logs.pop(key).close()

    def update_collection(self, name: str, settings: Mapping[str, Any]) -> ShardMap:
        """Write changed settings (checked by the caller) into the collection's map; the holders reconfigure
        their replicas at their next sync (:meth:`_reconfigure`; this node at once)."""
        maps, _ = self._require()
        changed = maps.change(name, lambda current: replace(current, spec={**current.spec, **settings}))
        self.sync()
        return changed

    def known_map(self, name: str) -> ShardMap:
        """The map as of the last sync (read from the servers when this node has not seen it yet)."""
        with self._lock:
            known = self._known.get(name)
        return known if known is not None else self.shard_map(name)

    def shard_map(self, name: str) -> ShardMap:
        maps, _ = self._require()
        found = maps.get(name)
        if found is None:
            raise CollectionNotFoundError(f"collection {name!r} does not exist in the cluster")
        return found[0]

    # -- writes --

    def insert(self, name: str, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None,
               *, upsert: bool = False, named_vectors: Mapping[str, Any] | None = None) -> dict[int, int]:
        """Route rows to their shards and append one frame per shard; returns {shard: log sequence}.
        ``named_vectors``: columns ``{name: (n, dim)}`` of the collection's named dense vectors, sliced by shard
        as ``vectors``; checked against the collection's declared names before anything is appended (the check
        each replica makes as it applies the frame: a batch it would refuse is never acknowledged)."""
        shard_map = self.shard_map(name)
        matrix = np.asarray(vectors, dtype=np.float32)
        named = {n: np.asarray(col, dtype=np.float32) for n, col in (named_vectors or {}).items()}
        check_named_batch(list(ids), named, validate_named_vectors(shard_map.spec.get("vectors")))
        groups = self._route(ids, shard_map.shards)
        acked: dict[int, int] = {}
        for shard, rows in groups.items():
            payload = encode_insert(ids=[ids[r] for r in rows], vectors=matrix[rows],
                                    metadata=[dict(metadata[r]) for r in rows] if metadata is not None else None,
                                    upsert=upsert, named_vectors={n: col[rows] for n, col in named.items()} or None)
            acked[shard] = self.append(shard_map, shard, payload)
        return acked

    def delete(self, name: str, ids: Sequence[str]) -> dict[int, int]:
        shard_map = self.shard_map(name)
        return {shard: self.append(shard_map, shard, encode_payload("vector_delete",
                                                                    {"ids": [ids[r] for r in rows], "filter": None}))
                for shard, rows in self._route(ids, shard_map.shards).items()}

    # -- reads --

    def search(self, name: str, vector: Any, k: int = 10, *, filter: Any = None,
               wait_for: Mapping[int, int] | None = None, timeout: float = 30.0,
               **options: Any) -> list[dict[str, Any]]:
        """Top-k over every shard, from the replicas held here (see the module's documentation)."""
        hits: list[dict[str, Any]] = []
        for collection in self._held_collections(name, wait_for, timeout):
            hits.extend(collection.search(vector, k, filter=filter, **options))
        hits.sort(key=lambda h: h["distance"])
        return hits[:k]

    def count(self, name: str, *, wait_for: Mapping[int, int] | None = None, timeout: float = 30.0) -> int:
        return sum(c.count() for c in self._held_collections(name, wait_for, timeout))

    def _held_collections(self, name: str, wait_for: Mapping[int, int] | None, timeout: float) -> list[Any]:
        """The local collection of every shard of ``name``, once each has applied the sequence ``wait_for``
        names for it; UnavailableError when a shard is not held here, RequestTimeoutError when it lags."""
        shard_map = self.shard_map(name)
        found = []
        for shard in range(shard_map.shards):
            applier = self._applier(name, shard)
            if applier is None:
                raise UnavailableError(
                    f"collection {name!r}: shard {shard} is held by {', '.join(shard_map.replicas[shard]) or 'no node'}"
                    f", not by {self.node.id}; searching other nodes' shards is not built yet")
            want = (wait_for or {}).get(shard)
            if want is not None and not applier.wait_for(want, timeout):
                raise RequestTimeoutError(f"collection {name!r}: shard {shard} did not apply entry {want} within "
                                          f"{timeout:g}s (applied {applier.applied_seq})")
            found.append(applier.collection)
        return found

    def replica_positions(self) -> dict[str, dict[str, int]]:
        """What a heartbeat reports: per replica here, the last sequence applied and the last checkpointed.

        Read without the node's lock: a sync holds it while it stops a replica (joining an applier that may
        sit in a 5 s log read), and a heartbeat waiting that long would let this node's key expire, so the
        others would move its replicas away. A dict copy is atomic in CPython."""
        appliers = sorted(self._appliers.copy().items())
        return {"applied": {f"{name}/{shard}": a.applied_seq for (name, shard), a in appliers},
                "checkpointed": {f"{name}/{shard}": a.position.checkpointed_seq for (name, shard), a in appliers}}

    def held(self) -> dict[str, list[int]]:
        """The shards whose replicas run here, by collection."""
        with self._lock:
            out: dict[str, list[int]] = {}
            for (name, shard) in sorted(self._appliers):
                out.setdefault(name, []).append(shard)
            return out

    # -- sync --

    def sync(self, wait: float | None = None) -> bool:
        """One pass: rebalance maps whose holders changed, then run exactly the replicas this node holds.
        With ``wait``, a pass another thread is running is waited for no longer than that many seconds (False:
        none ran here).

        One pass at a time (the sync thread, a create, a drop, a read that finds a shard placed here since
        the last pass): a pass acts on the maps it read at its start, and one that read them before a drop
        and re-create of a name, running on beside those, stopped the new collection's replica and started
        the dropped one's again. (A shard whose log is found gone is left alone: dropped since the pass began.)"""
        if not self._sync_lock.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
            return False
        try:
            self._sync_pass()
        finally:
            self._sync_lock.release()
        return True

    def _sync_pass(self) -> None:
        maps, members = self._require()
        infos, live = self._live(members)
        wanted: set[tuple[str, int]] = set()
        current = maps.all()
        with self._lock:
            self._known = {m.collection: m for m in current}
        for shard_map in current:
            if self._needs_rebalance(shard_map, live):
                # The live nodes again, now: a node that joined since this pass read them (and placed itself)
                # would otherwise be placed away again on the older list.
                infos, live = self._live(members)
            if self._needs_rebalance(shard_map, live):
                shard_map = maps.rebalance(shard_map.collection, live)
                log.info("cluster: %s placed on %s (epoch %d)", shard_map.collection, live, shard_map.epoch)
            with self._lock:
                self._known[shard_map.collection] = shard_map
            for shard in shard_map.shards_of(self.node.id):
                try:
                    if self._needs_snapshot(shard_map.collection, shard):
                        self._bootstrap(shard_map, shard, infos)
                    self._ensure_replica(shard_map, shard)
                    self._reconfigure(shard_map, shard)
                    self._purge(shard_map, shard, infos)
                except LogDeletedError as exc:  # dropped since this pass read the maps; the next pass cleans up
                    log.info("cluster: %s leaves %s shard %d: %s", self.node.id, shard_map.collection, shard, exc)
                    continue
                wanted.add((shard_map.collection, shard))
        mapped = {m.collection for m in self._known.values()}
        with self._lock:
            for key in [key for key in self._appliers if key not in wanted]:
                log.info("cluster: %s no longer holds %s shard %d; stopping its replica", self.node.id, *key)
                self._appliers.pop(key).stop()
                if key in self._logs:
                    self._logs.pop(key).close()
            for info in self.engine.list_collections():  # replicas of dropped collections go
                base = info["name"].rpartition(".s")[0]
                if base and base not in mapped and not any(k[0] == base for k in self._appliers):
                    log.info("cluster: %s deletes its replica %s of a dropped collection", self.node.id, info["name"])
                    self.engine.delete_collection(info["uuid"])

    def _live(self, members: Membership) -> tuple[dict[str, NodeInfo], list[str]]:
        """The live nodes' infos and ids, this node among them."""
        infos = {n.id: n for n in members.nodes()}
        if self.node.id not in infos:  # a beat was lost to an outage: we are live, say so
            members.heartbeat()
        return infos, sorted({*infos, self.node.id})

    @staticmethod
    def _needs_rebalance(shard_map: ShardMap, live: list[str]) -> bool:
        want = min(shard_map.replication_factor, len(live))
        return any(len(owners) != want or any(n not in live for n in owners) for owners in shard_map.replicas)

    def _ensure_replica(self, shard_map: ShardMap, shard: int) -> None:
        key = (shard_map.collection, shard)
        expected_log = shard_log_name(shard_map, shard)
        marker = replica_marker(shard_map, shard)
        with self._lock:
            current = self._appliers.get(key)
            if current is not None and current.log.name != expected_log:
                current.stop()  # the name was dropped and made again: that replica is of the old collection
                del self._appliers[key]
                self._failed.discard(key)
                current = None
            if current is not None and current.running:
                return
            if current is not None and current.error is not None:  # e.g. the log was purged past it
                if key not in self._failed:
                    log.error("cluster: %s cannot apply %s shard %d: %s", self.node.id, key[0], shard, current.error)
                    self._failed.add(key)
                return
            name = local_name(*key)
            try:
                if self.engine.get_collection(name).get("description") != marker:
                    log.info("cluster: %s deletes %s, a replica of an earlier collection of that name", self.node.id,
                             name)
                    self.engine.delete_collection(name)
                    raise CollectionNotFoundError(name)
            except CollectionNotFoundError:
                spec = local_spec(shard_map, shard)  # its description names the log it applies
                self.engine.create_collection(name, int(spec.pop("dimension")), **spec)
            shard_log = self._log(*key)
            self._start_seq[key] = shard_log.last_seq()  # it answers reads once it applied this far
            replica = self.engine.collection(name)
            replica.is_shard_replica = True  # storage/sparse_search.py: the caller checks names, applies modifiers
            applier = ShardApplier(shard_log, replica)
            self._appliers[key] = applier.start()
            log.info("cluster: %s applies %s shard %d from entry %d", self.node.id, key[0], shard,
                     applier.applied_seq + 1)

    def _reconfigure(self, shard_map: ShardMap, shard: int) -> None:
        """Give the local replica the settings the map holds now (update_collection); its description stays
        the replica marker."""
        name = local_name(shard_map.collection, shard)
        try:
            local = self.engine.collection(name).config
        except CollectionNotFoundError:
            return
        spec = local_spec(shard_map, shard)
        mine = local.to_dict()  # as the spec holds them (named vectors: NamedVectorConfig.to_dict)

        def differs(key: str) -> bool:
            return json.dumps(spec[key], sort_keys=True) != json.dumps(mine[key], sort_keys=True)

        changed = {key: spec[key] for key in RECONFIGURABLE if key in spec and differs(key)}
        if changed:
            log.info("cluster: %s reconfigures its replica %s: %s", self.node.id, name, ", ".join(sorted(changed)))
            self.engine.update_collection(name, **changed)

    def _needs_snapshot(self, name: str, shard: int) -> bool:
        with self._lock:
            applier = self._appliers.get((name, shard))
        return applier is not None and not applier.running and isinstance(applier.error, SnapshotRequiredError)

    def _bootstrap(self, shard_map: ShardMap, shard: int, nodes: Mapping[str, NodeInfo]) -> bool:
        """Rebuild this node's replica of ``shard`` from a live holder's snapshot (downloaded outside the
        lock), so that its applier can go on from the snapshot's checkpoint; False when no holder could give
        one that reaches the log's first entry (tried again at the next sync)."""
        from proximadb.cluster.fanout import cluster_key  # fanout imports this module

        key = (shard_map.collection, shard)
        name, marker, report = local_name(*key), replica_marker(shard_map, shard), f"{key[0]}/{shard}"
        first = self._log(*key, shard_map).first_seq()
        for holder in shard_map.replicas[shard]:
            info = nodes.get(holder)
            if holder == self.node.id or info is None or info.checkpointed.get(report, -1) + 1 < first:
                continue  # not live, or its files are behind the log's first entry too
            stage = self.engine.data_dir / f".snapshot-in-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                started = time.monotonic()
                doc = fetch_snapshot(info.rest, name, stage, cluster_key())
                if doc["description"] != marker or doc["checkpoint_seq"] + 1 < first:
                    log.warning("cluster: the snapshot of %s from %s does not reach entry %d of log %s (it holds "
                                "%r up to %d)", name, holder, first, marker, doc["description"], doc["checkpoint_seq"])
                    continue
                with self._lock:
                    old = self._appliers.pop(key, None)
                    if old is not None:
                        old.stop(checkpoint=False)
                    try:
                        self.engine.delete_collection(name)
                    except CollectionNotFoundError:
                        pass
                    spec = local_spec(shard_map, shard)
                    self.engine.create_collection(name, int(spec.pop("dimension")), from_files=stage, **spec)
                    self._failed.discard(key)
                    self.snapshots_installed += 1
                log.info("cluster: %s installed %s from %s's snapshot at entry %d (%d bytes in %.1fs); the log "
                         "follows from there", self.node.id, name, holder, doc["checkpoint_seq"],
                         sum(f["bytes"] for f in doc["files"].values()), time.monotonic() - started)
                return True
            except (UnavailableError, CorruptionError) as exc:
                log.warning("cluster: %s could not take a snapshot of %s from %s: %s", self.node.id, name, holder,
                            exc)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        if key not in self._failed:
            log.error("cluster: %s needs a snapshot of %s (the log starts at entry %d) and no live holder gave "
                      "one yet; trying again at the next sync", self.node.id, name, first)
            self._failed.add(key)
        return False

    def _purge(self, shard_map: ShardMap, shard: int, nodes: Mapping[str, NodeInfo]) -> None:
        try:
            self.retention.run(shard_map, shard, nodes, self._log(shard_map.collection, shard, shard_map),
                               shard_log_name(shard_map, shard))
        except LogUnavailableError as exc:
            log.warning("cluster: %s could not purge the log of %s shard %d: %s", self.node.id,
                        shard_map.collection, shard, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.sync_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
            except LogUnavailableError as exc:
                self.sync_errors += 1
                log.warning("cluster: %s could not sync with the NATS servers: %s", self.node.id, exc)
            except Exception:
                self.sync_errors += 1
                log.exception("cluster: %s: sync failed", self.node.id)

    # -- helpers --

    def _require(self) -> tuple[ShardMaps, Membership]:
        if self.maps is None or self.membership is None:
            raise UnavailableError(f"cluster node {self.node.id} is not started")
        return self.maps, self.membership

    def _applier(self, name: str, shard: int) -> ShardApplier | None:
        with self._lock:
            return self._appliers.get((name, shard))

    def replica_applier(self, name: str, shard: int, shard_map: ShardMap | None = None) -> ShardApplier | None:
        """The running replica of ``name``'s shard here, or None; with ``shard_map``, only a replica of the
        collection it describes (a name dropped and made again that this node has not synced yet, or a shard
        the map places here whose replica the sync thread has not started yet: it syncs now, so a read never
        answers from the old collection's rows, nor is refused by the node that holds the shard)."""
        applier = self._applier(name, shard)
        placed_here = shard_map is not None and shard < len(shard_map.replicas) \
            and self.node.id in shard_map.replicas[shard]
        if applier is None and placed_here:
            # a pass bootstrapping a replica can take minutes: the read waits a little, then asks another holder
            self.sync(wait=wait_seconds(PLACED_WAIT))
            applier = self._applier(name, shard)
        elif shard_map is not None and applier is not None and applier.log.name != shard_log_name(shard_map, shard):
            self.sync()
            applier = self._applier(name, shard)
            if applier is not None and applier.log.name != shard_log_name(shard_map, shard):
                return None
        return applier if applier is not None and applier.running else None

    def serving_seq(self, name: str, shard: int, seq: int = 0) -> int:
        """The entry a replica here must have applied before it answers a read that needs ``seq``: a replica
        started (or moved here) answers nothing older than the log as it was when it started."""
        with self._lock:
            return max(seq, self._start_seq.get((name, shard), 0))

    def append(self, shard_map: ShardMap, shard: int, payload: bytes) -> int:
        """Append one frame to the log of ``shard`` of the collection ``shard_map`` describes (a map read for
        this write: a name dropped and made again meanwhile has new logs); the sequence once JetStream
        acknowledged it. CollectionNotFoundError when the log is gone (the collection was dropped since the map
        was read): the append never makes it again."""
        try:
            return self._log(shard_map.collection, shard, shard_map).append(payload, self._message_id()).seq
        except LogDeletedError as exc:
            raise CollectionNotFoundError(f"collection {shard_map.collection!r} was dropped: {exc}") from exc

    def last_seqs(self, shard_map: ShardMap, shards: Sequence[int]) -> list[int]:
        """The last sequence of each of ``shards``' logs, as their stream leaders answer now
        (:func:`proximadb.cluster.log_positions.last_seqs`)."""
        return log_positions.last_seqs(self, shard_map, shards)

    def barrier_seqs(self, shard_map: ShardMap, shards: Sequence[int]) -> list[int]:
        """Per shard, the sequence of a barrier appended now to its log: every write acknowledged before this
        call is below it (:func:`proximadb.cluster.log_positions.barrier_seqs`)."""
        return log_positions.barrier_seqs(self, shard_map, shards)

    def _log(self, name: str, shard: int, shard_map: ShardMap | None = None) -> JetStreamLog:
        expected = shard_log_name(shard_map or self.known_map(name), shard)
        with self._lock:
            key = (name, shard)
            if key not in self._logs or self._logs[key].name != expected:
                self._logs[key] = JetStreamLog(self.urls, expected, replicas=self.replicas, deadline=self.deadline,
                                               session=self.session)  # the old one shares the node's connection
            return self._logs[key]

    def _message_id(self) -> str:
        """The next append's message id: from the request id (a client's retry is appended once), else new."""
        return idempotency.message_id(lambda: f"{self.node.id}-{uuid.uuid4().hex}")

    @staticmethod
    def _route(ids: Sequence[str], shards: int) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for row, record_id in enumerate(ids):
            groups.setdefault(shard_of(str(record_id), shards), []).append(row)
        return groups

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until every replica here has applied its log's last entry (tests, and a drain before a stop)."""
        end = time.monotonic() + timeout
        with self._lock:
            pairs = [(applier, self._logs[key]) for key, applier in self._appliers.items()]
        for applier, shard_log in pairs:
            if not applier.wait_for(shard_log.last_seq(), max(0.0, end - time.monotonic())):
                return False
        return True

