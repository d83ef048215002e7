"""How far a collection's shard logs reach now, as JetStream has them: what a read waits for.

Two ways, both for every shard asked at once (one round trip), both through the node's NATS connection:

* :func:`last_seqs` asks each shard stream's leader for its info (``state.last_seq``). Cheap, and what
  ``bounded`` reads and the lag metrics use. Only a stream leader's answer counts
  (:func:`~proximadb.cluster.nats_session.leader_answered`): while a stream has none (an election, after its
  leader was lost) every member answers with its own state, maybe behind what was acknowledged, so the read
  is retried until a leader answers, within the request's deadline (then LogUnavailableError, 503). What
  this cannot see: a leader cut off from the others that has not yet noticed it lost its quorum still answers
  as leader, with the state it had, while the majority may have elected another leader and acknowledged
  writes it never saw.
* :func:`barrier_seqs` appends a **barrier** to each shard log and returns the sequence JetStream gave it.
  An append is acknowledged only once a quorum of the stream's servers holds it, with a sequence above every
  entry acknowledged before it, so every write acknowledged before the read began is below the barrier,
  whichever server answers; the barrier itself need not be applied (what a read waits for:
  :mod:`proximadb.cluster.read_target`). A leader cut off from its quorum cannot acknowledge the barrier:
  the read is retried until its deadline and fails (503/504) rather than answer from a stale state. This is
  what ``strong`` reads use; it costs an append per shard per read.

A barrier's bytes are an ordinary ``vector_delete`` frame of schema version 1 with no ids and no filter
(:data:`BARRIER`): every replica, of any version, applies it as an entry that changes nothing
(``Collection.apply_log_entry``), and ``wal dump``-style readers of the log show it as such. Each carries a
fresh message id (``barrier-<hex>``), kept across the call's retries: a retry after a lost acknowledgement
gets the first copy's sequence back (JetStream's duplicate window), so one read appends one barrier a log.

A log that does not exist reads as 0 while the servers' map still names this incarnation of the collection
(not expected: a create makes the logs before it writes the map); when the collection was dropped (and maybe
made again) since ``shard_map`` was read: LogDeletedError, never a retry until the deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from proximadb.cluster.names import INCARNATION, shard_log_name
from proximadb.cluster.nats_session import NatsSession, leader_answered
from proximadb.cluster.shard_log import LogDeletedError, stream_name, subject_name
from proximadb.codec.payload import encode_payload

if TYPE_CHECKING:
    from proximadb.cluster.node import ClusterNode
    from proximadb.cluster.shard_map import ShardMap

BARRIER = encode_payload("vector_delete", {"ids": [], "filter": None}, 1)


def last_seqs(node: ClusterNode, shard_map: ShardMap, shards: Sequence[int]) -> list[int]:
    """The last sequence of each of ``shards``' logs, as their stream leaders answer now (the module's
    documentation)."""
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError

    session = _session(node)
    streams = [stream_name(shard_log_name(shard_map, shard)) for shard in shards]  # read, never created

    async def infos() -> list[int | None]:
        found = await asyncio.gather(*(session.js.stream_info(stream) for stream in streams), return_exceptions=True)
        for stream, answer in zip(streams, found, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, NotFoundError):
                raise answer
            if not isinstance(answer, BaseException) and not leader_answered(answer):
                raise NatsError(f"stream {stream} has no leader now (an election): its members' own states "
                                "are not authoritative")  # retried by session.call
        return [None if isinstance(info, BaseException) else int(info.state.last_seq) for info in found]

    return _known(node, shard_map, session.call(infos, f"stream info of {len(streams)} shard log(s)"))


def barrier_seqs(node: ClusterNode, shard_map: ShardMap, shards: Sequence[int]) -> list[int]:
    """Per shard of ``shards``, the sequence of a barrier appended to its log now: every write acknowledged
    before this call is below it (the module's documentation)."""
    from nats.js.errors import NoStreamResponseError, NotFoundError

    session = _session(node)
    logs = [shard_log_name(shard_map, shard) for shard in shards]

    ids = [f"barrier-{uuid.uuid4().hex}" for _ in logs]  # the same on every retry of this call

    async def append(log: str, msg_id: str) -> int | None:
        try:
            ack = await session.js.publish(subject_name(log), BARRIER, timeout=session.timeout,
                                           stream=stream_name(log), headers={"Nats-Msg-Id": msg_id})
        except NoStreamResponseError:  # no stream listens (gone), or its leader is being elected
            try:
                await session.js.stream_info(stream_name(log))
            except NotFoundError:
                return None
            raise  # an election: retried by session.call
        return int(ack.seq)

    async def appends() -> list[int | None]:
        return list(await asyncio.gather(*(append(log, msg_id) for log, msg_id in zip(logs, ids, strict=True))))

    return _known(node, shard_map, session.call(appends, f"a read barrier on {len(logs)} shard log(s)"))


def _session(node: ClusterNode) -> NatsSession:
    node._require()
    session = node.session
    assert session is not None
    return session


def _known(node: ClusterNode, shard_map: ShardMap, seqs: list[Any]) -> list[int]:
    """``seqs`` with a missing log as 0, unless the collection was dropped since ``shard_map`` was read."""
    if None in seqs:
        current = node.maps.get(shard_map.collection) if node.maps is not None else None
        if current is None or current[0].spec.get(INCARNATION) != shard_map.spec.get(INCARNATION):
            raise LogDeletedError(f"the logs of {shard_map.collection!r} no longer exist: the collection was "
                                  "dropped (and maybe made again) since this map was read")
    return [seq or 0 for seq in seqs]
