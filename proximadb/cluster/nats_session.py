"""One connection to the NATS servers, used through blocking calls: what every cluster part talks through.

nats-py is asyncio; the daemon's cluster parts (a shard's log, membership, the shard map) are
called from ordinary threads. A :class:`NatsSession` runs one event loop in a daemon thread,
connects to the servers there (reconnecting forever to whichever answers), and offers
:meth:`NatsSession.call`: run a coroutine on that loop and wait for it, retrying what a busy or
electing cluster answers (no responders, no leader, a timeout, a refused socket) for up to
``deadline`` seconds, after which it raises :class:`~proximadb.errors.LogUnavailableError`
naming what was being done. Only calls that are safe to repeat may be retried: appends carry a
message id, key-value updates a revision; everything else only reads.

Key-value buckets (membership, shard maps) are opened, and created when missing, by
:meth:`NatsSession.bucket`: file storage, one value per key (``history=1``), ``replicas``
copies, and for a bucket of heartbeats a ``ttl`` after which a key not written again is gone.

Errors that are answers rather than outages (a key that does not exist, a revision that moved
on) are passed through at once: the caller names them in ``answers``.

**Cut off.** A node whose connection to every server has been down for ``CUT_OFF_SECONDS`` (a closed
socket is seen at once; a silent network cut by the client's pings, every ``PING_SECONDS``, after
``MAX_PINGS_OUT`` go unanswered) fails its calls at once, and any call in flight, with
LogUnavailableError, rather than retry until ``deadline``: a client gets 503 within seconds and its SDK
moves to another node. A server restart or a stream leader's election (the connection moves to another
server within a fraction of a second) stays well inside that.

**Within the request's time.** Calls made for a client's request (an append, a ledger claim, a read of the
last sequences) retry no longer than that request has left (:mod:`proximadb.deadline`; the daemon's
``request_timeout``), so a request that makes several calls one after another still answers within it. This
bounds the case the cut-off cannot see: a node connected only to a server that is itself partitioned from
the quorum (in a network partition with it) gets 503 within its request's time, not after every call's own
``deadline`` in turn. Background work (appliers, membership, sync) has no request deadline and keeps ``deadline``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from proximadb import deadline as request_deadline
from proximadb.errors import LogUnavailableError

log = logging.getLogger("proximadb.cluster")
T = TypeVar("T")
CUT_OFF_SECONDS = 5.0
# One request to the servers. Short, so that a call whose stream leader died is sent again soon after
# JetStream elected another (its Raft elections take 4 to 9 s): with 5 s, writes stalled 16 s after a
# leader's SIGKILL, with 2 s 9 s. Sending again is safe (message ids, revisions; the rest reads).
REQUEST_TIMEOUT = 2.0
PING_SECONDS = 2.0
MAX_PINGS_OUT = 2
_SLICE = 0.25  # a call in flight looks at the connection this often


def bucket_stream(bucket: str) -> str:
    """The JetStream stream that holds key-value bucket ``bucket``."""
    return f"KV_{bucket}"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key: str
    value: bytes
    revision: int  # the stream sequence of this value: what a revision-checked update names


class NatsSession:
    """A connection to the servers at ``urls`` on a loop of its own; ``name`` names its thread and its logs."""

    def __init__(self, urls: list[str], name: str, *, timeout: float = REQUEST_TIMEOUT, deadline: float = 30.0
                 ) -> None:
        self.name = name
        self.timeout = timeout  # one request to the servers
        self.deadline = deadline  # a call, with its retries through an election or a restart
        self._down_since: float | None = None  # monotonic time the connection to every server was lost
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_exception)
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._nc: Any = None
        self.js: Any = None
        try:
            self._nc, self.js = self.call(lambda: self._connect(urls), "connecting to NATS", retry=False,
                                          wait=deadline + 5)
        except BaseException:
            self.close()
            raise

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], doing: str, *, retry: bool = True,
             answers: tuple[type[BaseException], ...] = (), wait: float | None = None, cut_off: bool = True) -> T:
        """Run ``make()`` on the loop and return its result; retry outages until ``deadline`` has passed (or,
        sooner, the current request's own deadline, :mod:`proximadb.deadline`: a client's call is not kept
        past it by NATS calls one after another), then LogUnavailableError. Exceptions in ``answers`` (and
        any that is not a NATS or socket error) reach the caller unchanged. ``wait``: how long one attempt may
        take (default: two requests).
        ``cut_off=False``: run even when the node is cut off (closing the connection must)."""
        from nats.errors import Error as NatsError

        left = request_deadline.remaining()
        budget = self.deadline if left is None else max(0.0, min(self.deadline, left))
        give_up = time.monotonic() + budget
        pause = 0.05
        while True:
            if cut_off:
                self.refuse_when_cut_off(doing)
            future = asyncio.run_coroutine_threadsafe(make(), self._loop)
            try:
                attempt = self.timeout * 2 + 5 if wait is None else wait
                if left is not None:
                    attempt = min(attempt, max(0.05, give_up - time.monotonic()))
                return self._result(future, attempt, doing, cut_off)
            except answers:
                raise
            except (NatsError, asyncio.TimeoutError, TimeoutError, OSError) as exc:
                future.cancel()
                if cut_off:
                    self.refuse_when_cut_off(doing)
                if not retry or time.monotonic() + pause > give_up:
                    raise LogUnavailableError(
                        f"{doing}: the NATS servers did not answer within {budget:.3g}s "
                        f"({type(exc).__name__}: {str(exc) or 'no answer'})"
                    ) from exc
                log.debug("%s: %s: %s; retrying", self.name, doing, exc)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def cut_off_for(self) -> float:
        """Seconds the connection to every server has been down (0 while connected)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def refuse_when_cut_off(self, doing: str) -> None:
        """LogUnavailableError (503) naming ``doing`` once this node has been cut off for ``CUT_OFF_SECONDS``."""
        down = self.cut_off_for()
        if down >= CUT_OFF_SECONDS:
            raise LogUnavailableError(f"{doing}: this node is cut off from every NATS server (no connection for "
                                      f"{down:.1f}s); ask another node, or check this node's network")

    def _result(self, future: Any, wait: float, doing: str, cut_off: bool) -> Any:
        """``future``'s result within ``wait`` seconds (TimeoutError after), looking at the connection meanwhile."""
        give_up = time.monotonic() + wait
        while True:
            try:
                return future.result(timeout=max(0.0, min(_SLICE, give_up - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= give_up:
                    raise
                if cut_off and self.cut_off_for() >= CUT_OFF_SECONDS:
                    future.cancel()
                    self.refuse_when_cut_off(doing)

    async def bucket(self, name: str, *, replicas: int, ttl: float | None = None) -> Any:
        """The key-value bucket ``name``, created when missing (two nodes creating it at once both get it:
        JetStream accepts a create whose configuration equals the existing one)."""
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        try:
            return await self.js.key_value(name)
        except BucketNotFoundError:
            return await self.js.create_key_value(KeyValueConfig(
                bucket=name, history=1, ttl=ttl, replicas=replicas, storage=StorageType.FILE))

    async def read_key(self, bucket: str, key: str) -> KeyEntry | None:
        """A key's current value and revision, read from the bucket stream's leader (a direct get may be
        answered by a replica that is behind, and a map or a membership read just after a change must see
        it); None when the key does not exist, was deleted, or has expired."""
        from nats.js.errors import NotFoundError

        try:
            msg = await self.js.get_msg(bucket_stream(bucket), subject=f"$KV.{bucket}.{key}", direct=False)
        except NotFoundError:
            return None
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        return KeyEntry(key, bytes(msg.data or b""), int(msg.seq or 0))

    async def entries(self, bucket: str) -> dict[str, KeyEntry]:
        """Every key's current entry in a bucket (deleted and expired keys left out), from the leader.
        (nats-py's ``keys()``/``watchall()`` can end their listing before every key has arrived.)"""
        prefix = f"$KV.{bucket}."
        info = await self.js.stream_info(bucket_stream(bucket), subjects_filter=f"{prefix}>")
        found: dict[str, KeyEntry] = {}
        for subject in sorted(info.state.subjects or {}):
            entry = await self.read_key(bucket, subject[len(prefix):])
            if entry is not None:
                found[entry.key] = entry
        return found

    def close(self) -> None:
        self._closing = True
        try:
            self.call(self._shutdown, "closing the NATS connection", retry=False, cut_off=False)
        except LogUnavailableError:
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    async def _connect(self, urls: list[str]) -> tuple[Any, Any]:
        import nats  # the cluster extra

        async def quiet(exc: Exception) -> None:  # a server that is down: one debug line, not a traceback
            log.debug("%s: %s: %s", self.name, type(exc).__name__, exc)

        async def down() -> None:
            if self._down_since is None and not self._closing:
                self._down_since = time.monotonic()
                log.warning("%s: lost the connection to the NATS servers; reconnecting", self.name)

        async def up() -> None:
            if self._down_since is not None:
                log.warning("%s: reconnected to the NATS servers after %.1fs", self.name, self.cut_off_for())
            self._down_since = None

        # the first connection may take the whole deadline (servers starting); after it, reconnect forever
        nc = await asyncio.wait_for(
            nats.connect(servers=urls, connect_timeout=2, reconnect_time_wait=0.2, max_reconnect_attempts=-1,
                         allow_reconnect=True, error_cb=quiet, disconnected_cb=down, reconnected_cb=up,
                         ping_interval=PING_SECONDS, max_outstanding_pings=MAX_PINGS_OUT),
            timeout=self.deadline)
        return nc, nc.jetstream(timeout=self.timeout)

    async def _shutdown(self) -> None:
        """Close the connection (servers may be gone: bounded), then end every task nats-py left running."""
        try:
            if self._nc is not None:
                await asyncio.wait_for(self._nc.close(), timeout=self.timeout)
        except Exception as exc:  # the servers are gone: nothing to flush to
            log.debug("%s: closing the NATS connection: %s", self.name, exc)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """nats-py's background tasks (reconnects to a server that is down) fail on their own: debug, not noise."""
        log.debug("%s: %s %s", self.name, context.get("message"), context.get("exception") or "")


def leader_answered(info: Any) -> bool:
    """Whether a JetStream stream info answer came from the stream's leader, the one whose state is
    authoritative: a replicated stream's members answer too while it has no leader (NATS's stream info
    request: "leaderless" groups), with ``cluster.leader`` empty; a stream of a single server without
    clustering has no ``cluster`` at all."""
    cluster = getattr(info, "cluster", None)
    return cluster is None or bool(getattr(cluster, "leader", None))
