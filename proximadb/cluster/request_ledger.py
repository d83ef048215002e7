"""The cluster's ledger of write answers by request id (:mod:`proximadb.idempotency`), in a JetStream bucket.

Bucket ``pxdb_requests`` (key-value, replicated as the other buckets, every key expiring after
``idempotency.WINDOW_SECONDS``: the same window as the shard logs' message-id de-duplication), one key
per request id (the id's characters are all allowed in a key). A value is JSON, UTF-8::

    {"digest": "9f2c...", "state": "started"}
    {"digest": "9f2c...", "state": "done", "answer": {"deleted": 3, "updated": 0}, "acked": {"c...-s0": 17}}
    {"digest": "9f2c...", "state": "refused"}

``digest`` is what the request asked (:func:`proximadb.idempotency.digest`); ``state`` where its first
attempt got (``started``: claimed with a create, which the servers refuse when the key exists; ``refused``:
it failed with the request's own error and wrote nothing); ``answer`` what the daemon answered (an insert
keeps only its count: its ids are in its payload) and ``acked`` the log positions it was acknowledged.
Every node reads and writes the same bucket, so a client that retries a write on another node after a
failover gets the first answer. Reads go to the bucket stream's leader
(:meth:`~proximadb.cluster.nats_session.NatsSession.read_key`), so a key written just before is seen.
"""

from __future__ import annotations

import json
from typing import Any

from proximadb import idempotency
from proximadb.cluster.nats_session import NatsSession

BUCKET = "pxdb_requests"


class NatsLedger:
    """:class:`proximadb.idempotency.Ledger` over the ``pxdb_requests`` bucket."""

    def __init__(self, session: NatsSession, *, replicas: int = 3) -> None:
        self.session = session
        self._kv: Any = session.call(lambda: session.bucket(BUCKET, replicas=replicas,
                                                            ttl=idempotency.WINDOW_SECONDS),
                                     f"opening bucket {BUCKET}")

    def read(self, request_id: str) -> dict[str, Any] | None:
        entry = self.session.call(lambda: self.session.read_key(BUCKET, request_id),
                                  f"reading request {request_id} in {BUCKET}")
        return None if entry is None else dict(json.loads(entry.value))

    def claim(self, request_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """A create: refused by the servers when the key holds a value (one round trip for a first attempt)."""
        from nats.js.errors import KeyWrongLastSequenceError

        raw = _encode(entry)
        while True:
            try:
                self.session.call(lambda: self._kv.create(request_id, raw), f"claiming request {request_id} in "
                                  f"{BUCKET}", answers=(KeyWrongLastSequenceError,))
                return None
            except KeyWrongLastSequenceError:
                found = self.read(request_id)
                if found is not None:
                    return found  # else it expired just now: claim again

    def write(self, request_id: str, entry: dict[str, Any]) -> None:
        raw = _encode(entry)
        self.session.call(lambda: self._kv.put(request_id, raw), f"recording request {request_id} in {BUCKET}")


def _encode(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()


__all__ = ["BUCKET", "NatsLedger"]
