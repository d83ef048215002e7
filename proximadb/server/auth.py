"""API keys: one key store and checker shared by the REST middleware and the gRPC interceptor.

Keys come from ``--api-key`` / ``--read-only-api-key`` (or ``api_keys`` /
``read_only_api_keys`` in the config file, ``PROXIMADB_API_KEYS`` /
``PROXIMADB_READ_ONLY_API_KEYS`` comma-separated) and from a key file
(``--api-key-file`` / ``api_key_file``). In memory only SHA-256 digests are kept;
a presented key is hashed and compared with :func:`hmac.compare_digest` against
every configured digest.

Key file format (UTF-8 text, one key per line; ``#`` starts a comment; blank
lines are ignored)::

    # role  sha256 of the key, lower-case hex (64 digits)
    rw      9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    ro      60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752

``proximadb keys hash`` prints such a line for a key read from standard input.

Roles: ``rw`` may do everything, ``ro`` only reads. Reads and writes are told
apart by route (REST) or RPC (gRPC), never by HTTP method alone: a search is a
POST that only reads. Keys are never logged.

**The cluster key** (cluster mode: ``PROXIMADB_CLUSTER_KEY``, the secret the nodes present to each other,
:mod:`proximadb.cluster.fanout`) is accepted with its own role, ``cluster`` (never in a key file): a
read-only key with one exception. It may also run the two maintenance operations, compact and flush
(:data:`PEER_MAINTENANCE`), on a *shard address* (``<collection>.s<shard>@<seq>...``, one node's replica:
:func:`proximadb.cluster.placement.is_shard_address`) and over REST only, which is how a node compacts or
flushes a collection's replicas on its peers (:mod:`proximadb.cluster.maintenance`). The decision: both
change no data (compaction rewrites the same rows into fewer segments, a flush moves them from memory to a
segment) and a peer must be able to do them without holding a read-write key; on a plain collection name
they stay refused (403), so the cluster key cannot start cluster-wide work, nor write anything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proximadb.errors import AuthenticationError, PermissionDeniedError, ValidationError

READ_WRITE = "rw"
READ_ONLY = "ro"
ROLES = (READ_WRITE, READ_ONLY)  # the roles of configured keys and key files
CLUSTER = "cluster"  # the cluster key's (see the module's documentation)
PEER_MAINTENANCE = ("compact", "flush")  # operations (proximadb/api/operations.py) it may run on a shard address
DIGEST_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")

MISSING_KEY = "this server requires an API key: send 'Authorization: Bearer <key>'"
WRONG_KEY = "the API key is not valid"
READ_ONLY_KEY = "this API key is read-only and cannot {what}"


def digest(key: str) -> str:
    """SHA-256 of the key, lower-case hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def sealed(key: str) -> str:
    """The form a key is kept in after loading: ``sha256:<hex>`` (already sealed keys pass through)."""
    if key.startswith(DIGEST_PREFIX) and _HEX64.fullmatch(key[len(DIGEST_PREFIX):]):
        return key
    check_key_text(key)
    return DIGEST_PREFIX + digest(key)


def check_key_text(key: str) -> None:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise ValidationError("an API key must be non-empty and contain no whitespace")


def key_file_line(key: str, role: str = READ_WRITE) -> str:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    check_key_text(key)
    return f"{role} {digest(key)}"


def load_key_file(path: Path) -> list[tuple[str, str]]:
    """``(role, hex digest)`` pairs from a key file; a malformed line stops with its line number."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"API key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"API key file {path} cannot be read: {exc}") from None
    entries: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ROLES or not _HEX64.fullmatch(parts[1].lower()):
            raise ValidationError(
                f"API key file {path}, line {number}: expected '<rw|ro> <sha256 hex of the key>' "
                "(make one with `proximadb keys hash`)"
            )
        entries.append((parts[0], parts[1].lower()))
    return entries


def bearer_token(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` value (None when absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class KeyStore:
    """Configured keys as ``(role, digest bytes)``; :meth:`check` is the one decision both protocols use."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._entries: tuple[tuple[str, bytes], ...] = tuple(
            (role, bytes.fromhex(hex_digest)) for role, hex_digest in entries
        )
        for role, _ in self._entries:
            if role not in (*ROLES, CLUSTER):
                raise ValidationError(f"unknown API key role {role!r}")

    @classmethod
    def from_config(cls, config: Any) -> KeyStore:
        """From a :class:`~proximadb.server.config.ServerConfig` (keys sealed by its ``validate``)."""
        entries: list[tuple[str, str]] = []
        for role, keys in ((READ_WRITE, config.api_keys), (READ_ONLY, config.read_only_api_keys)):
            entries.extend((role, sealed(k)[len(DIGEST_PREFIX):]) for k in keys)
        if config.api_key_file is not None:
            entries.extend(load_key_file(config.api_key_file))
        if entries and getattr(config, "cluster", None):
            from proximadb.cluster.fanout import cluster_key  # peers' fan-out reads (see that module)

            key = cluster_key()
            if key is not None:
                entries.append((CLUSTER, sealed(key)[len(DIGEST_PREFIX):]))
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def counts(self) -> dict[str, int]:
        """Configured keys per role (the cluster key counts as read-only)."""
        return {role: sum(1 for r, _ in self._entries if r == role or (r == CLUSTER and role == READ_ONLY))
                for role in ROLES}

    def role_of(self, key: str | None) -> str | None:
        """The role of a presented key, or None; compares against every digest in constant time."""
        if key is None:
            return None
        presented = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: str | None = None
        for role, expected in self._entries:
            if hmac.compare_digest(presented, expected) and found != READ_WRITE:
                found = role
        return found

    def check(self, key: str | None, write: bool, what: str = "write", *, peer_maintenance: bool = False) -> None:
        """Nothing when allowed; AuthenticationError (no/wrong key) or PermissionDeniedError (ro key writing).
        ``peer_maintenance``: the request is a :data:`PEER_MAINTENANCE` operation on a shard address over REST,
        which the cluster key may run (the module's documentation)."""
        if not self._entries:
            return
        if key is None:
            raise AuthenticationError(MISSING_KEY)
        role = self.role_of(key)
        if role is None:
            raise AuthenticationError(WRONG_KEY)
        if write and role != READ_WRITE and not (role == CLUSTER and peer_maintenance):
            raise PermissionDeniedError(READ_ONLY_KEY.format(what=what))
