"""The log of record of one shard in cluster mode, behind a small interface (:class:`ShardLog`).

A shard's writes are appended to its log and acknowledged only once the log has them
durably on a quorum; every replica applies the log in order into its own engine. The
interface is what the rest of cluster mode may use, so that another log (Kafka) could
take JetStream's place:

    append(payload, msg_id) -> (seq, duplicate)   durable on a quorum when it returns
    read(from_seq, max_entries) -> [LogEntry]     in sequence order, from_seq on
    first_seq() / last_seq()                      what the log holds now
    purge_below(seq)                              drop entries < seq (all replicas have them)
    delete()                                      drop the whole log (its collection was dropped)

:class:`JetStreamLog` keeps one shard in one JetStream stream (``PXDB_<name>``, subject
``pxdb.log.<name>``, file storage, ``num_replicas`` R, fsync on every write as configured by
the servers: see :mod:`proximadb.cluster.nats_servers`). An entry's bytes are the payload
as the client sent it (the versioned Avro frame of :mod:`proximadb.codec.framing`), read back
with the time the stream recorded it (``LogEntry.time_us``, the same on every stream replica); its
message id (header ``Nats-Msg-Id``) makes a client's retry of the same write a no-op
within the stream's duplicate window (``DUPLICATE_WINDOW_SECONDS``): the append returns the
first copy's sequence with ``duplicate=True``.

The calls are blocking, through a :class:`~proximadb.cluster.nats_session.NatsSession` of the
log's own: each retries what a busy or electing cluster answers (no responders, no leader, a
timeout) for up to ``deadline`` seconds; after that it raises
:class:`~proximadb.errors.LogUnavailableError`. An append that timed out may still have been
recorded, which is why its retries (and the caller's) carry the same message id.

**Only a create makes a log.** ``JetStreamLog(..., create=True)`` makes the stream when it is missing;
that is what ``ClusterNode.create_collection`` does, before it writes the collection's map. Every other
opening (a holder starting its replica, an append, a retention purge) finds a missing stream gone
(:class:`LogDeletedError`, at once, never retried as an outage): the collection was dropped. Otherwise
an append racing a drop (its map read just before) would make the dropped log again. The JetStream
meta leader alone answers "stream not found" (a server cut off from it answers "not available", an
outage), so the answer is never a partition's. An append that finds no responders (no stream listens
on the subject, or its leader is being elected) asks for the stream's info: not found means deleted;
anything else is retried. ``purge_below`` and ``delete`` of a log that is gone are done at once.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from proximadb.cluster.nats_session import REQUEST_TIMEOUT, NatsSession
from proximadb.errors import LogUnavailableError, ValidationError

log = logging.getLogger("proximadb.cluster")
DUPLICATE_WINDOW_SECONDS = 120.0
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    payload: bytes
    msg_id: str | None
    # When the log recorded the entry (µs since the epoch), the same on every replica: applying an entry
    # stamps with it rather than the replica's clock (proximadb/storage/collection_apply.py). 0: unknown.
    time_us: int = 0


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    duplicate: bool  # True: a retry of an append the log had already (same msg_id); seq is the first's


def stream_name(name: str) -> str:
    """The JetStream stream of the shard log ``name``."""
    return f"PXDB_{name}"


def subject_name(name: str) -> str:
    """The subject the stream of the shard log ``name`` takes its appends on."""
    return f"pxdb.log.{name}"


class LogPurgedError(LookupError):
    """A read from below the log's first sequence: those entries were purged (bootstrap from a snapshot)."""


class LogDeletedError(LookupError):
    """The log itself is gone: its collection was dropped (ClusterNode.drop_collection deletes its logs)."""


class ShardLog(Protocol):
    name: str  # which log (its stream is stream_name(name))

    def append(self, payload: bytes, msg_id: str) -> Appended: ...
    def read(self, from_seq: int, max_entries: int = 1000) -> list[LogEntry]: ...
    def first_seq(self) -> int: ...
    def last_seq(self) -> int: ...
    def purge_below(self, seq: int) -> None: ...
    def delete(self) -> None: ...
    def close(self) -> None: ...


class JetStreamLog:
    """One shard's log in a JetStream stream on the servers at ``urls``; ``create``: make the stream when it
    is missing (a collection's create only), else a missing stream is :class:`LogDeletedError`."""

    def __init__(self, urls: list[str], name: str, *, replicas: int = 3, timeout: float = REQUEST_TIMEOUT,
                 deadline: float = 30.0, session: NatsSession | None = None, create: bool = False) -> None:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValidationError(f"log name {name!r}: use letters, digits, '-' and '_' only")
        self.name = name
        self.stream = stream_name(name)
        self.subject = subject_name(name)
        self.replicas = replicas
        self.timeout = timeout  # one request to the servers
        # a node's logs share its connection (``session``, left open by close()); alone, a log has its own
        self._own_session = session is None
        self._session = session or NatsSession(urls, f"shard-log-{name}", timeout=timeout, deadline=deadline)
        self._js = self._session.js
        try:
            self._call(self._ensure_stream if create else self._info, f"opening stream {self.stream}")
        except BaseException:
            self.close()
            raise

    # -- the interface --

    def append(self, payload: bytes, msg_id: str) -> Appended:
        if not msg_id:
            raise ValidationError("a log append needs a non-empty msg_id (it makes retries safe)")
        ack = self._call(
            lambda: self._publish(bytes(payload), msg_id),
            f"appending to {self.stream} (retry: an append with the same msg_id is applied once)",
        )
        return Appended(int(ack.seq), bool(ack.duplicate))

    def read(self, from_seq: int, max_entries: int = 1000) -> list[LogEntry]:
        if from_seq < 1 or max_entries < 1:
            raise ValidationError(f"read from seq {from_seq}, {max_entries} entries: both must be at least 1")
        return self._call(lambda: self._read(from_seq, max_entries), f"reading {self.stream} from {from_seq}")

    def first_seq(self) -> int:
        return int(self._call(self._info, "stream info").state.first_seq)

    def last_seq(self) -> int:
        return int(self._call(self._info, "stream info").state.last_seq)

    def purge_below(self, seq: int) -> None:
        """Drop the entries below ``seq``; a log already gone has nothing left to purge (done at once)."""
        self._call(lambda: self._purge(seq), f"purging {self.stream} below {seq}")

    def delete(self) -> None:
        """Delete the stream and every entry in it (a log already gone is not an error)."""
        self._call(self._delete, f"deleting {self.stream}")

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    # -- the asyncio side --

    async def _ensure_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            await self._js.stream_info(self.stream)
            return
        except NotFoundError:
            pass
        await self._js.add_stream(StreamConfig(
            name=self.stream, subjects=[self.subject], storage=StorageType.FILE, num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS, allow_direct=True,
        ))

    async def _info(self) -> Any:
        """The stream's info; LogDeletedError when the stream does not exist."""
        from nats.js.errors import NotFoundError

        try:
            return await self._js.stream_info(self.stream)
        except NotFoundError as exc:
            raise LogDeletedError(f"{self.stream} does not exist: its collection was dropped (a log is made only "
                                  "when its collection is created)") from exc

    async def _publish(self, payload: bytes, msg_id: str) -> Any:
        from nats.js.errors import NoStreamResponseError

        try:
            return await self._js.publish(self.subject, payload, timeout=self.timeout, stream=self.stream,
                                          headers={"Nats-Msg-Id": msg_id})
        except NoStreamResponseError:
            await self._info()  # LogDeletedError when the stream is gone; else an outage, retried
            raise

    async def _purge(self, seq: int) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._js.purge_stream(self.stream, seq=seq)
        except NotFoundError:
            pass  # the log is gone with its collection: nothing below seq is left

    async def _delete(self) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._js.delete_stream(self.stream)
        except NotFoundError:
            pass

    async def _read(self, from_seq: int, max_entries: int) -> list[LogEntry]:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        state = (await self._info()).state
        if from_seq < state.first_seq:  # purged below (a log purged to its end holds no messages at all)
            raise LogPurgedError(f"{self.stream}: entries below {state.first_seq} were purged; asked for {from_seq}")
        want = min(max_entries, state.last_seq - from_seq + 1)
        if want <= 0:
            return []
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq,
                                ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True, num_replicas=1)
        sub = await self._js.pull_subscribe(self.subject, stream=self.stream, config=config)
        entries: list[LogEntry] = []
        try:
            while len(entries) < want:
                try:
                    batch = await sub.fetch(want - len(entries), timeout=self.timeout)
                except NatsTimeout:
                    break
                for msg in batch:
                    headers = msg.headers or {}
                    meta = msg.metadata
                    entries.append(LogEntry(int(meta.sequence.stream), msg.data, headers.get("Nats-Msg-Id"),
                                            (meta.timestamp - _EPOCH) // _MICROSECOND))
        finally:
            await sub.unsubscribe()
        return entries

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], doing: str) -> T:
        """Every call here is safe to repeat: appends carry their msg_id, the rest only read or purge."""
        return self._session.call(make, doing, answers=(LogPurgedError, LogDeletedError))


def create_logs(urls: list[str], names: list[str], *, replicas: int, deadline: float,
                session: NatsSession | None) -> list[JetStreamLog]:
    """Make the logs ``names`` (a collection's create, the only maker of logs); when one cannot be made, those
    made before it are deleted again and the error raised."""
    made: list[JetStreamLog] = []
    try:
        for name in names:
            made.append(JetStreamLog(urls, name, replicas=replicas, deadline=deadline, session=session, create=True))
    except BaseException:
        delete_logs(made)
        raise
    return made


def delete_logs(logs: list[JetStreamLog]) -> None:
    """Delete ``logs`` and close them, as far as the servers let (one that cannot be deleted now stays; logged)."""
    for shard_log in logs:
        try:
            shard_log.delete()
        except LogUnavailableError as exc:
            log.warning("cluster: could not delete log %s: %s", shard_log.name, exc)
        finally:
            shard_log.close()
