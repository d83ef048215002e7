"""Reads of one shard, wherever a replica of it is: here, or on a peer over its REST API.

:meth:`Fanout.on_shard` runs ``local(collection)`` on this node's replica when it holds one (after
waiting for ``seq``, the read's target: :mod:`proximadb.cluster.read_target`), otherwise, or when the
local replica does not reach ``seq`` within ``LOCAL_WAIT``, ``remote(client, address)`` against each live
holder in turn, with ``address`` = ``<collection>.s<shard>@<seq>~<ms>+<incarnation>`` (see
:mod:`proximadb.cluster.backend`; ``ms`` the request's time left; ``seq`` 0 for ``eventual``: no wait;
``incarnation`` the read's map's, :func:`shard_address`). A holder that does not answer, times out (has not
applied ``seq`` in time), is not serving, or has no replica (of that incarnation) is passed over (while the
request's deadline allows: waits for ``seq`` end at it, :func:`proximadb.deadline.wait_seconds`); an answer that is an
error of the request itself (a bad filter: ValidationError, ...) is the answer. When no holder answers:
UnavailableError (HTTP 503 / gRPC UNAVAILABLE).

**Every shard at once.** A read's shards are asked in parallel (:meth:`Fanout.each`, on a pool of
``SHARD_THREADS`` threads per node): a search over S shards takes about the slowest shard's time, not the sum.

**Which replica.** The holders are ranked for each read (:meth:`Fanout.order`): first those that satisfy
the read (the applied sequence a holder reported in its last heartbeat, ``NodeInfo.applied``, reaches
``seq``), then, among those, this node's own replica, then the peer with the fewest reads this node has in
flight to it (ties broken at random, so the nodes share the load). A local replica behind ``seq`` is
not waited for while a peer reported that it has it; it is asked after the peers that do.

Clients are the SDK's REST clients, one per peer address, kept for the node's life. They present the
cluster key, ``PROXIMADB_CLUSTER_KEY`` from the daemon's environment (a secret shared by every node, never
on a command line): with it set, each clustered daemon also accepts it as a *read-only* API key
(:meth:`proximadb.server.auth.KeyStore.from_config`), so fan-out works when the nodes require API keys;
fan-out calls are reads only.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

from proximadb import deadline
from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.names import incarnation_of, local_name
from proximadb.cluster.node import ClusterNode
from proximadb.cluster.shard_map import ShardMap
from proximadb.deadline import wait_seconds
from proximadb.errors import CollectionNotFoundError, RequestTimeoutError, UnavailableError

log = logging.getLogger("proximadb.cluster")
T = TypeVar("T")
S = TypeVar("S")
LIVE_CACHE_SECONDS = 0.5  # how old the live-node list a read ranks holders by may be
SHARD_THREADS = 32  # one node's shard reads in flight at once, over every request (Fanout.each)
PEER_TIMEOUT = 40.0  # longer than a replica's wait for an entry (backend.WAIT_SECONDS)
LOCAL_WAIT = 10.0  # this node's replica lagging longer than this: another holder is asked
CLUSTER_KEY_ENV = "PROXIMADB_CLUSTER_KEY"
PASS_OVER = (UnavailableError, RequestTimeoutError, CollectionNotFoundError, OSError)


def shard_address(name: str, shard: int, seq: int, wait: float | None = None, incarnation: str = "") -> str:
    """The address of ``name``'s shard replica once it applied ``seq`` (:mod:`proximadb.cluster.backend`);
    ``wait``: seconds it may wait for that (None: the replica's own limit); ``incarnation``: which collection
    of that name (its map's; a replica of another one does not answer)."""
    return (f"{local_name(name, shard)}@{seq}" + ("" if wait is None else f"~{int(max(0.0, wait) * 1000)}")
            + (f"+{incarnation}" if incarnation else ""))


def rank(me: str, replica: str, seq: int, holders: list[str], live: Mapping[str, NodeInfo],
         local_applied: int | None, load: Mapping[str, int]) -> list[str]:
    """The holders of ``replica`` (``<collection>/<shard>``) a read that needs ``seq`` can ask, best first:
    those whose applied sequence reaches ``seq`` (``me``: ``local_applied``, -1 while its replica catches up,
    None when it holds none; a peer: what it reported in its last heartbeat), then ``me``, then the fewest
    reads in flight (``load``), then at random. Holders not live (or without a REST address) are left out."""
    def applied(holder: str) -> int:
        if holder == me:
            return -1 if local_applied is None else local_applied
        return live[holder].applied.get(replica, -1)

    candidates = [h for h in holders if (h == me and local_applied is not None)
                  or (h != me and h in live and live[h].rest)]
    return sorted(candidates, key=lambda h: (applied(h) < seq, h != me, load.get(h, 0), random.random()))


def cluster_key() -> str | None:
    """The key nodes present to each other (``PROXIMADB_CLUSTER_KEY``), or None when unset or empty."""
    return os.environ.get(CLUSTER_KEY_ENV, "").strip() or None


class Fanout:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._clients: dict[str, Any] = {}
        self._in_flight: dict[str, int] = {}  # by holder: reads this node has sent there and not had back
        self._lock = threading.Lock()
        self._live_at: tuple[float, dict[str, NodeInfo]] | None = None  # (when read, the live nodes)
        self._pool = ThreadPoolExecutor(max_workers=SHARD_THREADS, thread_name_prefix="fanout")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _live(self) -> dict[str, NodeInfo]:
        """The live nodes, read from the membership bucket at most every ``LIVE_CACHE_SECONDS`` (a listing is
        several round trips to NATS; a holder that died since is passed over like any that does not answer)."""
        now = time.monotonic()
        with self._lock:
            if self._live_at is not None and now - self._live_at[0] < LIVE_CACHE_SECONDS:
                return self._live_at[1]
        assert self.node.membership is not None
        live = {n.id: n for n in self.node.membership.nodes()}
        with self._lock:
            self._live_at = (now, live)
        return live

    def each(self, read: Callable[[S], T], parts: Iterable[S]) -> list[T]:
        """``read(part)`` for every part (a shard, or a shard and its ids) at once, on this node's fan-out
        threads, each in a copy of the request's context (its deadline, its consistency level); the answers
        in the parts' order. The first part that fails raises (after every part ended)."""
        items = list(parts)
        if len(items) <= 1:
            return [read(item) for item in items]
        futures = [self._pool.submit(contextvars.copy_context().run, read, item) for item in items]
        wait(futures)
        return [future.result() for future in futures]

    def client(self, rest_url: str) -> Any:
        from proximadb.sdk import connect_rest

        with self._lock:
            if rest_url not in self._clients:
                self._clients[rest_url] = connect_rest(rest_url, timeout=PEER_TIMEOUT, retries=0,
                                                        api_key=cluster_key())
            return self._clients[rest_url]

    def order(self, name: str, shard: int, seq: int, holders: list[str], live: Mapping[str, NodeInfo],
              local_applied: int | None) -> list[str]:
        """The live holders to ask for this read, best first (:func:`rank`, with this node's reads in flight)."""
        with self._lock:
            load = dict(self._in_flight)
        return rank(self.node.node.id, f"{name}/{shard}", seq, holders, live, local_applied, load)

    def on_shard(self, shard_map: ShardMap, shard: int, seq: int, local: Callable[[Any], T],
                 remote: Callable[[Any, str], T]) -> T:
        me = self.node.node.id
        name = shard_map.collection
        holders = list(shard_map.replicas[shard]) if shard < len(shard_map.replicas) else []
        applier = self.node.replica_applier(name, shard, shard_map)
        assert self.node.membership is not None
        live = self._live()
        wanted = 0 if applier is None else self.node.serving_seq(name, shard, seq)  # a new replica catches up first
        local_applied = None if applier is None else applier.applied_seq if applier.applied_seq >= wanted else -1
        order = self.order(name, shard, seq, holders, live, local_applied)
        lagging: RequestTimeoutError | None = None
        tried: list[str] = []
        for holder in order:
            if tried and wait_seconds(LOCAL_WAIT) <= 0:
                break  # the request's deadline has passed: no time to ask another holder
            tried.append(holder)
            if holder == me:
                assert applier is not None
                if not wanted or applier.wait_for(wanted, wait_seconds(LOCAL_WAIT)):
                    return local(applier.collection)
                lagging = RequestTimeoutError(f"collection {name!r}: shard {shard} did not apply entry {wanted} "
                                              f"in time (applied {applier.applied_seq})")
                log.warning("cluster: %s; trying another replica", lagging)
                continue
            with self._lock:
                self._in_flight[holder] = self._in_flight.get(holder, 0) + 1
            try:
                # the peer waits for seq no longer than this request may
                return remote(self.client(live[holder].rest), shard_address(name, shard, seq, deadline.remaining(),
                                                                    incarnation_of(shard_map)))
            except PASS_OVER as exc:
                if isinstance(exc, RequestTimeoutError):
                    lagging = exc
                log.warning("cluster: %s shard %d on %s did not answer (%s); trying another replica",
                            name, shard, holder, exc)
            finally:
                with self._lock:
                    self._in_flight[holder] -= 1
        if lagging is not None:  # the holders that answered had not applied the entry the read needs
            raise lagging
        raise UnavailableError(f"collection {name!r}: no replica of shard {shard} answered "
                               f"(holders {', '.join(holders) or 'none'}; tried {', '.join(tried) or 'none'})")
