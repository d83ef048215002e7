"""The daemon's backend in cluster mode: what :class:`~proximadb.service.unified.UnifiedAvroService` calls
instead of the local :class:`~proximadb.storage.engine.Engine` when ``serve --cluster`` runs.

:class:`ClusterEngine` offers the part of the Engine facade the service uses (create, list, get, drop a
collection; ``collection(name)``; ``options``, ``catalog``, ``close``) and :class:`ClusterCollection` the
part of a Collection (insert_payload, delete, delete_where, get, get_many, count, search_batch, scroll,
search_text, hybrid_search, search_groups, recommend, stats, wal_stats). So the service and both protocols
stay as they are; only the object behind them differs.

- **Writes** are checked here as one node checks them (dimension, ids, vectors, metadata, timestamps;
  an insert of an id that is live anywhere in the cluster is refused), routed by id to their shard,
  appended to the shard's log, and acknowledged once JetStream acknowledged every part. The node records
  the highest sequence it was acknowledged per shard.
- **Reads** go to one replica of each shard: the local one when held here, else the holders in turn
  (:mod:`proximadb.cluster.fanout`); a holder that fails or does not answer is passed over, and when no
  holder answers the read fails with UnavailableError (503 / UNAVAILABLE). Every read first waits until
  the replica applied the sequence its consistency level asks (:mod:`proximadb.cluster.read_target`:
  strong, bounded (default: also this node's acknowledged writes), session, eventual). Each write's
  acknowledged sequence also goes to the request's session token (:mod:`proximadb.consistency`).
- **Shard addressing.** A replica is reached by the name ``<collection>.s<shard>@<seq>[~<ms>][+<incarnation>]``
  (the local collection of that shard, once it applied entry ``seq``, waiting for it at most ``ms``
  milliseconds: the asking request's time left; without it ``WAIT_SECONDS``; only a replica of the
  collection made with that ``incarnation``, the id every create gives a name, so a read that overlaps a drop
  and a create of the same name never mixes the two) over the public REST API: the fan-out needs no
  route of its own. Collections whose names carry ``@`` cannot be created, so the names cannot clash.
- **compact and flush** reach every replica of every shard (:mod:`proximadb.cluster.maintenance`): local ones
  directly, a peer's through its REST route on the shard address (the cluster key may do that, and only that).
- **Text, hybrid, grouped search and recommend** (:mod:`proximadb.cluster.queries`) answer what one node
  holding every row answers: text search in two phases (the shards' BM25 statistics of the query's terms
  added up, then every shard's top-k scored with the sums; the statistics travel in ``search_text``'s
  ``corpus_stats`` field, which only shard addresses take), hybrid search as one node fuses over those two
  searches, groups merged from every shard's groups (each shard asked for more until settled), recommend
  with its example ids looked up across the shards and every shard's answer merged.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from proximadb import consistency, idempotency
from proximadb.cluster import maintenance
from proximadb.cluster.fanout import Fanout, shard_address
from proximadb.cluster.names import INCARNATION, incarnation_of, shard_log_name
from proximadb.cluster.node import ClusterNode
from proximadb.cluster.placement import SHARD_ADDRESS, is_shard_address, shard_of
from proximadb.cluster.queries import ClusterQueries
from proximadb.cluster.read_target import ReadTargets
from proximadb.cluster.request_ledger import NatsLedger
from proximadb.cluster.shard_log import LogDeletedError
from proximadb.cluster.shard_map import ShardMap
from proximadb.cluster.snapshot import snapshot_stream
from proximadb.codec.avro_batch import DecodedBatch
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.deadline import wait_seconds
from proximadb.errors import (
    CollectionNotFoundError,
    RequestTimeoutError,
    UnavailableError,
    ValidationError,
    VectorExistsError,
    VectorNotFoundError,
)
from proximadb.storage import named_search
from proximadb.storage.catalog import CollectionConfig, check_dimension_limits
from proximadb.storage.engine import Engine
from proximadb.storage.metadata_check import metadata_sizes
from proximadb.storage.named_columns import check_named_batch
from proximadb.storage.operations import InsertOp
from proximadb.storage.validation import (
    MAX_METADATA_KEY_BYTES,
    check_ids,
    check_metadata,
    check_sparse_names,
    check_timestamps,
    check_vectors,
    record_label,
)

log = logging.getLogger("proximadb.cluster")
REPLICA_NAME = re.compile(r"(?P<name>.+)\.s(?P<shard>\d+)")
MAX_SHARDS = 256
DEFAULT_REPLICATION = 3  # replicas per shard when the create does not say: min(3, live nodes)
WAIT_SECONDS = 30.0


class ClusterEngine:
    """See the module's documentation."""

    clustered = True

    def __init__(self, engine: Engine, node: ClusterNode,
                 bounded_staleness_ms: int = consistency.DEFAULT_BOUNDED_STALENESS_MS) -> None:
        self.local = engine
        self.node = node
        self.options = engine.options
        self.fanout = Fanout(node)
        self.read_targets = ReadTargets(node, bounded_staleness_ms)
        assert node.session is not None, "the node joins before the engine serves"
        self.request_ledger = NatsLedger(node.session, replicas=node.replicas)  # proximadb/idempotency.py
        self._acked: dict[str, int] = {}  # by shard log name: the last sequence this node was acknowledged
        self._acked_lock = threading.Lock()

    @property
    def catalog(self) -> Any:
        return self.local.catalog

    def close(self) -> None:
        self.fanout.close()
        self.node.stop()
        self.local.close()

    # -- collections --

    def create_collection(self, name: str, dimension: int, *, shards: Any = 1, replication_factor: Any = None,
                          **settings: Any) -> dict[str, Any]:
        if isinstance(name, str) and "@" in name:
            raise ValidationError(f"collection name {name!r}: '@' is kept for shard addresses in cluster mode")
        cfg = CollectionConfig.new(name, dimension, **settings)  # the same checks and messages as one node
        check_dimension_limits(cfg, self.options.limits.max_dimension)  # as Engine.create_collection does
        if "vectors" in settings:  # the map's spec holds them as checked: JSON, every replica makes the same
            settings["vectors"] = {vec_name: vec.to_dict() for vec_name, vec in cfg.vectors.items()}
        live = len(self.node.membership.nodes()) if self.node.membership is not None else 1
        rf = min(DEFAULT_REPLICATION, max(live, 1)) if replication_factor is None else replication_factor
        for key, value, top in (("shards", shards, MAX_SHARDS), ("replication_factor", rf, 16)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValidationError(f"{key} must be an integer from 1 to {top}, not {value!r}")
        return self._described(self.node.create_collection(cfg.name, cfg.dimension, shards=shards,
                                                           replication_factor=rf, **settings))

    def get_collection(self, name_or_uuid: str) -> dict[str, Any]:
        """The collection's settings and placement, and ``vector_count``: a count over its shards at the
        request's consistency level (None while a shard has no replica answering)."""
        return self._with_count(self.node.shard_map(name_or_uuid))

    def _with_count(self, shard_map: ShardMap) -> dict[str, Any]:
        """:meth:`_described` and ``vector_count`` (None, logged, while a shard has no replica answering)."""
        try:
            count: int | None = ClusterCollection(self, shard_map.collection).count()
        except (UnavailableError, RequestTimeoutError) as exc:
            log.warning("cluster: vector_count of %s left out: %s", shard_map.collection, exc)
            count = None
        return {**self._described(shard_map), "vector_count": count}

    @staticmethod
    def _described(shard_map: ShardMap) -> dict[str, Any]:
        """The collection's settings (as one node gives them) and its placement (cluster mode's own fields)."""
        info = config_of(shard_map).to_dict()
        info.update(uuid=shard_map.collection, shards=shard_map.shards,
                    replication_factor=shard_map.replication_factor,
                    placement=[list(r) for r in shard_map.replicas], epoch=shard_map.epoch)
        return info

    def list_collections(self) -> list[dict[str, Any]]:
        assert self.node.maps is not None
        return [self._with_count(m) for m in self.node.maps.all()]

    def update_collection(self, name_or_uuid: str, **changes: Any) -> dict[str, Any]:
        """Change settings as one node does (the same checks and messages; default_ttl_seconds excepted):
        written to the collection's map (revision-checked), and every holder reconfigures its replicas at its
        next sync (this node at once)."""
        shard_map = self.node.shard_map(name_or_uuid)
        new = config_of(shard_map).updated(changes)
        if new.default_ttl_seconds != config_of(shard_map).default_ttl_seconds:
            raise ValidationError("default_ttl_seconds is set when a collection is created in cluster mode (every "
                                  "replica stamps it as it applies the log); make a new collection to change it")
        settings = {key: getattr(new, key) for key in changes if key != "vectors"}
        if "indexing_algorithm" in changes or "index_params" in changes:  # validated together
            settings.update(indexing_algorithm=new.indexing_algorithm, index_params=new.index_params)
        if "vectors" in changes:
            # names, dimensions and metrics are fixed (updated() refused a change); each one's own index settings
            # may change: the spec holds them as checked, and every holder reconfigures its replicas with them
            settings["vectors"] = {vec_name: vec.to_dict() for vec_name, vec in new.vectors.items()}
        return self._described(self.node.update_collection(shard_map.collection, settings))

    def delete_collection(self, name_or_uuid: str) -> None:
        self.node.drop_collection(self.node.shard_map(name_or_uuid).collection)

    is_shard_address = staticmethod(is_shard_address)

    def collection(self, name_or_uuid: str) -> Any:
        address = SHARD_ADDRESS.fullmatch(name_or_uuid)
        if address is not None:  # a peer's fan-out: this node's replica of one shard
            wait = WAIT_SECONDS if address["wait_ms"] is None else min(WAIT_SECONDS, int(address["wait_ms"]) / 1000)
            return self.replica(address["name"], int(address["shard"]), int(address["seq"]), wait,
                                address["incarnation"] or "")
        return ClusterCollection(self, self.node.known_map(name_or_uuid).collection)

    def replica(self, name: str, shard: int, seq: int, timeout: float = WAIT_SECONDS, incarnation: str = "") -> Any:
        """The local collection of ``name``'s shard, once it applied ``seq``; CollectionNotFoundError when this
        node holds no replica of it (the caller tries another holder), or, with ``incarnation``, none of that
        collection of the name (it was dropped and made again, and this node or the caller is a sync behind)."""
        current = self.node.known_map(name)
        if incarnation and incarnation_of(current) != incarnation:
            self.node.sync()  # this node may be the one a sync behind
            current = self.node.known_map(name)
        if incarnation and incarnation_of(current) != incarnation:
            raise CollectionNotFoundError(f"collection {name!r} (incarnation {incarnation}) was dropped; the "
                                          f"cluster's collection of that name is {incarnation_of(current)}")
        applier = self.node.replica_applier(name, shard, current)
        if applier is None and shard in self.node.shard_map(name).shards_of(self.node.node.id):
            self.node.sync()  # placed here since the last sync (a create or a move just now)
            applier = self.node.replica_applier(name, shard, current)
        if applier is None:
            raise CollectionNotFoundError(f"node {self.node.node.id} holds no replica of {name!r} shard {shard}")
        seq = self.node.serving_seq(name, shard, seq)
        timeout = wait_seconds(timeout)  # no longer than the request's deadline
        if seq and not applier.wait_for(seq, timeout):
            raise RequestTimeoutError(f"collection {name!r}: shard {shard} did not apply entry {seq} within "
                                      f"{timeout:g}s (applied {applier.applied_seq})")
        return applier.collection

    # -- read targets (proximadb/cluster/read_target.py) and the sequences this node was acknowledged --

    def targets(self, shard_map: ShardMap) -> list[int]:
        """Per shard, the sequence its replica must have applied for the current read's consistency level."""
        with self._acked_lock:
            acked = [self._acked.get(shard_log_name(shard_map, s), 0) for s in range(shard_map.shards)]
        return self.read_targets.targets(shard_map, acked)

    def append(self, shard_map: ShardMap, shard: int, payload: bytes) -> int:
        seq = self.node.append(shard_map, shard, payload)
        self.acknowledge(shard_log_name(shard_map, shard), seq)
        return seq

    def acknowledge(self, log_name: str, seq: int) -> None:
        """A write this node answers was acknowledged at ``seq`` of ``log_name`` (appended here, or by the
        first attempt of a retried request: proximadb/idempotency.py): its reads wait for it (bounded) and
        the response's session token names it."""
        with self._acked_lock:
            self._acked[log_name] = max(self._acked.get(log_name, 0), seq)
        consistency.acknowledged(log_name, seq)

    # -- snapshots for peers --

    def replica_snapshot(self, replica: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """The snapshot of this node's replica ``<collection>.s<shard>`` (proximadb/cluster/snapshot.py), at a
        checkpoint taken now; CollectionNotFoundError when no replica of it runs here."""
        address = REPLICA_NAME.fullmatch(replica)
        applier = None if address is None else self.node.replica_applier(address["name"], int(address["shard"]))
        if applier is None:
            raise CollectionNotFoundError(f"node {self.node.node.id} runs no replica {replica!r}")
        applier.collection.flush()  # the checkpoint: everything applied so far is in the files
        description = str(self.local.get_collection(replica).get("description") or "")
        stage = self.local.data_dir / f".snapshot-out-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        doc, chunks = snapshot_stream(applier.collection.directory, stage, replica, description)
        log.info("cluster: %s sends a snapshot of %s at entry %d (%d files, %d bytes)", self.node.node.id, replica,
                 doc["checkpoint_seq"], len(doc["files"]), sum(f["bytes"] for f in doc["files"].values()))
        return doc, chunks


class ClusterCollection(ClusterQueries):
    """One collection of the cluster, as the service sees a local Collection (see the module's documentation;
    search_text, hybrid_search, search_groups and recommend: proximadb/cluster/queries.py)."""

    def __init__(self, owner: ClusterEngine, name: str) -> None:
        self.owner = owner
        self.name = name
        self.shard_map = owner.node.known_map(name)
        self.config = config_of(self.shard_map)

    def sparse_names(self, wanted: list[str]) -> dict[str, Any]:
        """The sparse vectors the collection declares: as of this node's last sync, or read again from the
        servers when a name of ``wanted`` is not among them (update_collection on another node may have added
        it since; an insert or a search naming it must not be refused until this node's next sync)."""
        declared: dict[str, Any] = self.config.sparse_vectors
        if any(name not in declared for name in wanted):
            self.shard_map = self.owner.node.shard_map(self.name)
            self.config = config_of(self.shard_map)
            declared = self.config.sparse_vectors
        return declared

    @property
    def named_dims(self) -> dict[str, int]:
        """The named dense vectors the collection declares, name -> dimension (fixed at creation, so the map as
        of this node's last sync holds them)."""
        return self.config.named_dims

    # -- writes --

    def insert_payload(self, payload: bytes | bytearray | memoryview) -> list[str]:
        # named vectors checked against the declared ones in the scan, as Collection.insert_payload does
        _version, _op, batch = decode_payload(payload, expected_dim=self.config.dimension,
                                              named_dims=self.config.named_dims)
        assert isinstance(batch, DecodedBatch)
        op = batch.to_insert_op()
        self._check_insert(op)
        self._writable("insert")
        if not op.upsert and not idempotency.retried_insert():  # a retry's ids may be its own rows (appended once)
            existing = [r["id"] for r in self.get_many(op.ids, include_vectors=False)]
            if existing:
                shown = ", ".join(repr(i) for i in existing[:5])
                more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
                raise VectorExistsError(f"{len(existing)} id(s) already exist: {shown}{more}; use upsert to "
                                        "replace them")
        fresh = self._fresh_map()
        for shard, rows in self._route(op.ids, fresh.shards).items():
            expires = None if op.expires_at is None else op.expires_at[rows]
            sparse = None if not op.sparse_vectors else {
                name: col.take(np.asarray(rows, dtype=np.int64)) for name, col in op.sparse_vectors.items()}
            named = None if not op.named_vectors else {  # the shard's rows of each named vector (a v4 frame)
                name: col[rows] for name, col in op.named_vectors.items()}
            part = encode_insert(ids=[op.ids[r] for r in rows], vectors=op.vectors[rows],
                                 metadata=[op.metadata[r] for r in rows], timestamps=op.timestamps[rows],
                                 upsert=op.upsert, expires_at=expires, sparse_vectors=sparse, named_vectors=named)
            self.owner.append(fresh, shard, part)
        return list(op.ids)

    def _check_insert(self, op: InsertOp) -> None:
        """What a local collection checks before it logs an insert (storage/collection_writes.py), unstamped."""
        n = len(op.ids)
        limits = self.owner.options.limits
        if n > limits.max_batch:
            from proximadb.errors import PayloadTooLargeError

            raise PayloadTooLargeError(f"batch of {n} records exceeds the server's max_batch limit of "
                                       f"{limits.max_batch}")
        check_ids(op.ids, max_bytes=limits.max_id_bytes)
        check_vectors(op.vectors, record_label(op.ids), cosine=self.config.distance_metric == "cosine")
        check_timestamps(op.timestamps, op.expires_at, op.ids)
        if op.sparse_vectors:
            check_sparse_names(op.sparse_vectors, self.sparse_names(list(op.sparse_vectors)))
        check_named_batch(op.ids, op.named_vectors, self.config.vectors)
        sizes = metadata_sizes(list(op.metadata), MAX_METADATA_KEY_BYTES)
        for i in np.flatnonzero((sizes < 0) | (sizes > limits.max_metadata_bytes)).tolist():
            check_metadata(op.metadata[i], f"record {i} (id {op.ids[i]!r})", limits.max_metadata_bytes)

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(check_ids(list(ids), allow_duplicates=True,
                                           max_bytes=self.owner.options.limits.max_id_bytes)))
        self._writable("delete")
        found = len(self.get_many(ids, include_vectors=False))  # what the delete removes, barring a race
        fresh = self._fresh_map()
        for shard, rows in self._route(ids, fresh.shards).items():
            self.owner.append(fresh, shard, encode_payload("vector_delete",
                                                               {"ids": [ids[r] for r in rows], "filter": None}))
        return found

    def delete_where(self, flt: Any) -> int:
        """Every shard applies the filter at its log position; the count is the matches just before."""
        import json

        text = flt if isinstance(flt, str) else json.dumps(flt)
        self._writable("delete by filter")
        found = self.count(text)
        fresh = self._fresh_map()
        for shard in range(fresh.shards):
            self.owner.append(fresh, shard, encode_payload("vector_delete", {"ids": [], "filter": text}))
        return found

    def update_metadata(self, id_: str, metadata: Any, *, replace: bool = False) -> dict[str, Any]:
        """Merge (or with ``replace``, swap) a record's metadata: a ``vector_update`` entry on its shard's log,
        stamped here, so every replica gives the record the same timestamp."""
        limits = self.owner.options.limits
        check_ids([id_], max_bytes=limits.max_id_bytes)
        plain = check_metadata(metadata, f"id {id_!r}", limits.max_metadata_bytes)
        self._writable("update")
        if self.get(id_, include_vector=False) is None:
            raise VectorNotFoundError(f"no vector with id {id_!r} in collection {self.name}")
        datum = {"updates": [{"id": id_, "metadata": dict(plain), "replace": bool(replace)}],
                 "timestamp": time.time_ns() // 1000}
        fresh = self._fresh_map()
        self.owner.append(fresh, shard_of(id_, fresh.shards), encode_payload("vector_update", datum))
        record = self.get(id_, include_vector=False)  # this node's own write: read back once applied
        if record is None:  # deleted meanwhile by another writer
            raise VectorNotFoundError(f"no vector with id {id_!r} in collection {self.name}")
        return record

    def _writable(self, doing: str) -> None:
        """A write on a node cut off from every NATS server fails at once with 503 (LogUnavailableError; the
        SDK moves to another node): its checks read replicas that cannot apply anything meanwhile, so they
        would wait out the request's deadline (504), and its append could not be acknowledged anyway."""
        session = self.owner.node.session
        if session is not None:
            session.refuse_when_cut_off(f"{doing} in collection {self.name!r}")

    # -- reads --

    def get(self, id_: str, *, include_vector: bool = True) -> dict[str, Any] | None:
        found = self.get_many([id_], include_vectors=include_vector)
        return found[0] if found else None

    def get_many(self, ids: Sequence[str], *, include_vectors: bool = True) -> list[dict[str, Any]]:
        by_id: dict[str, dict[str, Any]] = {}
        routed = self._route(ids)
        targets = self._targets() if routed else []
        def read(routing: tuple[int, list[int]]) -> list[dict[str, Any]]:
            shard, rows = routing
            part = [ids[r] for r in rows]
            return self.owner.fanout.on_shard(  # type: ignore[no-any-return]
                self.shard_map, shard, targets[shard], lambda c: c.get_many(part, include_vectors=include_vectors),
                lambda client, addr: client.get_vectors(addr, part, include_vectors=include_vectors))

        for records in self.owner.fanout.each(read, routed.items()):
            for record in records:
                by_id[record["id"]] = record
        return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]

    def count(self, flt: Any = None) -> int:
        return sum(self._every_shard(lambda c, _: c.count(flt), lambda client, addr, _: client.count(addr, flt)))

    def search_batch(self, queries: Any, k: int, *, filter: Any = None, include_vectors: bool = False,
                     include_metadata: bool = True, exact: bool = False, ef: int | None = None,
                     nprobe: int | None = None, score_threshold: float | None = None,
                     oversampling: float | None = None, using: str | None = None) -> list[list[dict[str, Any]]]:
        """Every shard's top-k (its score_threshold applied there), merged by (distance, id). ``using``: a named
        vector searched on every shard (its distances, by its metric, merge the same way)."""
        options = {"filter": filter, "include_vectors": include_vectors, "include_metadata": include_metadata,
                   "exact": exact, "ef": ef, "nprobe": nprobe, "score_threshold": score_threshold,
                   "oversampling": oversampling, "using": using}
        if using is not None:  # one node's messages (naming this collection, not a replica), before any shard
            _name, dim, _metric = named_search.resolve(self.config, using)
            named_search.check_query_dim(queries, using, dim)
        matrix = np.asarray(queries, dtype=np.float32)
        merged: list[list[dict[str, Any]]] = [[] for _ in range(len(matrix))]
        given = {o: v for o, v in options.items() if v is not None}
        for answers in self._every_shard(lambda c, _: c.search_batch(matrix, k, **options),
                                         lambda client, addr, _: client.search_batch(addr, matrix, k, **given)):
            for row, hits in enumerate(answers):
                merged[row].extend(hits)
        return [sorted(hits, key=lambda h: (h["distance"], h["id"]))[:k] for hits in merged]

    def scroll(self, *, limit: int = 100, cursor: str | None = None, filter: Any = None,
               include_vectors: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """Records in ascending id order after ``cursor`` (the last id of the previous page, as on one node):
        a page from every shard after the same cursor, merged by id."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be an integer from 1 to 10000, not {limit!r}")
        rows: list[dict[str, Any]] = []
        more = False
        for page, after in self._every_shard(
                lambda c, _: c.scroll(limit=limit, cursor=cursor, filter=filter, include_vectors=include_vectors),
                lambda client, addr, _: client.scroll(addr, limit=limit, cursor=cursor, filter=filter,
                                                      include_vectors=include_vectors)):
            rows.extend(page)
            more = more or after is not None
        rows.sort(key=lambda r: r["id"])
        if len(rows) > limit or (more and len(rows) == limit):
            return rows[:limit], rows[limit - 1]["id"]
        return rows, None

    def stats(self) -> dict[str, Any]:
        """One node's statistics fields over one replica of each shard (maintenance.collection_stats)."""
        parts = self._every_shard(lambda c, _: c.stats(), lambda client, addr, _: client.stats(addr))
        return maintenance.collection_stats(self.name, self.shard_map.collection,
                                            config_of(self.shard_map).indexing_algorithm, parts)

    def flush(self) -> None:
        """Flush every replica (each once it applied this read's target): proximadb/cluster/maintenance.py.
        Replicas also checkpoint on their own schedule (applier.py)."""
        maintenance.flush(self.owner, self.shard_map, self._targets())

    def compact(self) -> dict[str, Any]:
        """Compact every replica; the totals and each replica's report (proximadb/cluster/maintenance.py)."""
        return maintenance.compact(self.owner, self.shard_map, self._targets())

    def wal_stats(self) -> dict[str, Any]:
        return {}  # the log of record is JetStream's

    def _targets(self) -> list[int]:
        """The read's target per shard (:meth:`ClusterEngine.targets`). A map this node read before the name
        was dropped, and maybe made again, names logs that are gone (LogDeletedError): the read goes to the
        collection the servers name now, or fails with CollectionNotFoundError when there is none. Inside
        ``_one_read`` (proximadb/cluster/queries.py) the targets it pinned."""
        if self._pinned is not None:
            return self._pinned
        try:
            return self.owner.targets(self.shard_map)
        except LogDeletedError:
            self.shard_map = self.owner.node.shard_map(self.name)
            return self.owner.targets(self.shard_map)

    def _fresh_map(self) -> ShardMap:
        """The map as the servers hold it now, for a write (the node's copy may be a sync behind); the same
        collection, or CollectionNotFoundError when it was dropped meanwhile."""
        fresh = self.owner.node.shard_map(self.name)
        if fresh.spec.get(INCARNATION) != self.shard_map.spec.get(INCARNATION):
            self.shard_map = fresh  # dropped and made again since the node's last sync: write to the new one
        return fresh

    def _route(self, ids: Sequence[str], shards: int | None = None) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for row, record_id in enumerate(ids):
            groups.setdefault(shard_of(str(record_id), shards or self.shard_map.shards), []).append(row)
        return groups


def config_of(shard_map: ShardMap) -> CollectionConfig:
    """The collection's settings, as its map's spec holds them."""
    spec = {k: v for k, v in shard_map.spec.items() if k != INCARNATION}
    return CollectionConfig.new(shard_map.collection, int(spec.pop("dimension")), **spec)


__all__ = ["ClusterCollection", "ClusterEngine", "shard_address"]
